package election

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

var web = Key{Namespace: "default", Name: "kubevip-web"}

func conflict() error {
	return apierrors.NewConflict(leasesGVR.GroupResource(), web.Name, errFake)
}

var errFake = apierrors.NewServiceUnavailable("injected by the test")

// observed reports whether the node's informer handler has seen key.
func (n *node) observed(key Key) bool {
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	_, ok := n.e.observed[key]
	return ok
}

// renewals counts the calls of an update reactor and passes them on to f.
type renewals struct {
	calls atomic.Int32
	f     k8stesting.ReactionFunc
}

func (r *renewals) react(a k8stesting.Action) (bool, runtime.Object, error) {
	r.calls.Add(1)
	return r.f(a)
}

func TestCampaignBeforeRun(t *testing.T) {
	a := newAPIServer(t)
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	n.e.Campaign(web)
	if !n.e.Campaigning(web) {
		t.Error("Campaigning = false after Campaign before Run, want the candidacy queued")
	}
	n.start()
	n.waitFor("leading the lease campaigned for before Run", func() bool { return n.e.Leading(web) })
	if h, i := a.holder(web); h != "node1" || i != "boot-1" {
		t.Errorf("lease held by %s/%s, want node1/boot-1", h, i)
	}
}

func TestResignBeforeRun(t *testing.T) {
	a := newAPIServer(t)
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	n.e.Campaign(web)
	if err := n.e.Resign(context.Background(), web); err != nil {
		t.Fatalf("Resign of a queued candidacy: %v", err)
	}
	n.start()
	if n.e.Campaigning(web) {
		t.Error("Campaigning = true after Resign before Run")
	}
	if w := n.writes(); w != 0 {
		t.Errorf("%d lease writes for a candidacy resigned before Run, want 0", w)
	}
}

func TestCampaignAfterRunReturned(t *testing.T) {
	a := newAPIServer(t)
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.e.Run(ctx); err != nil {
		t.Errorf("Run with an ended context = %v, want nil", err)
	}
	n.e.Campaign(web)
	if n.e.Campaigning(web) {
		t.Error("Campaigning = true after Run returned: a candidacy nobody runs")
	}
	if err := n.e.Run(context.Background()); err == nil {
		t.Error("second Run = nil, want an error")
	}
}

func TestTermAndConfig(t *testing.T) {
	a := newAPIServer(t)
	clk := clocktest.New(t0)
	n := newNode(t, a, clk, "node1", "boot-1")
	n.start()

	cfg := n.e.Config()
	if cfg.Clock != clk {
		t.Error("Config().Clock is not the clock passed in")
	}
	cfg.Clock = nil
	want := Config{Identity: "node1", Instance: "boot-1", LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("Config() (-want +got):\n%s", diff)
	}

	if _, ok := n.e.Term(web); ok {
		t.Error("Term ok before any campaign")
	}
	n.lead(web)
	term, ok := n.e.Term(web)
	if diff := cmp.Diff(Term{Deadline: t0.Add(3 * time.Second), Expiry: t0.Add(5 * time.Second)}, term); !ok || diff != "" {
		t.Errorf("Term after acquiring at +0 (ok %v) (-want +got):\n%s", ok, diff)
	}

	clk.Set(t0.Add(time.Second))
	n.waitFor("the renewal at +1s", func() bool {
		term, _ := n.e.Term(web)
		return term.Deadline.After(t0.Add(3 * time.Second))
	})
	term, ok = n.e.Term(web)
	if diff := cmp.Diff(Term{Deadline: t0.Add(4 * time.Second), Expiry: t0.Add(6 * time.Second)}, term); !ok || diff != "" {
		t.Errorf("Term after renewing at +1s (ok %v) (-want +got):\n%s", ok, diff)
	}

	if err := n.e.Resign(context.Background(), web); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.e.Term(web); ok {
		t.Error("Term ok after Resign")
	}
}

// A holder whose renewals do not get through leads until the send time of
// its last accepted write + RenewDeadline, then steps down and notifies.
func TestBoundedLeadership(t *testing.T) {
	tests := []struct {
		name string
		hang bool // until the test ends; else fail at once
	}{
		{name: "renewals fail"},
		{name: "renewals hang", hang: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPIServer(t)
			n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
			n.start()
			n.lead(web)
			release := make(chan struct{})
			t.Cleanup(func() { close(release) }) // before Run stops
			r := &renewals{f: func(k8stesting.Action) (bool, runtime.Object, error) {
				if tt.hang {
					<-release
				}
				return true, nil, errFake
			}}
			n.cs.PrependReactor("update", "leases", r.react)
			before := n.notified(web)

			n.clk.Set(t0.Add(time.Second))
			n.waitFor("a renewal", func() bool { return r.calls.Load() > 0 })
			n.clk.Set(t0.Add(3*time.Second - time.Nanosecond))
			if !n.e.Leading(web) {
				t.Error("stepped down before the renew deadline")
			}
			n.clk.Set(t0.Add(3 * time.Second))
			if n.e.Leading(web) {
				t.Error("still leading at the last accepted send + RenewDeadline")
			}
			if got := n.notified(web) - before; got != 1 {
				t.Errorf("%d notifications at the step-down, want 1", got)
			}
			n.clk.Set(t0.Add(time.Minute))
			if n.e.Leading(web) {
				t.Error("leading again a minute later with no renewal accepted")
			}
		})
	}
}

// A renewal accepted late extends the hold only to its own send time +
// RenewDeadline.
func TestLateRenewalLeadsOnlyUntilItsSendPlusRenewDeadline(t *testing.T) {
	a := newAPIServer(t)
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	n.start()
	n.lead(web)
	entered, proceed := make(chan struct{}), make(chan struct{})
	r := &renewals{f: func(k8stesting.Action) (bool, runtime.Object, error) {
		select {
		case <-proceed:
			return true, nil, errFake // later renewals fail
		default:
		}
		close(entered)
		<-proceed
		return false, nil, nil // the first goes through, late
	}}
	n.cs.PrependReactor("update", "leases", r.react)

	n.clk.Set(t0.Add(time.Second))
	waitClosed(t, entered, "the renewal sent at +1s")
	n.clk.Set(t0.Add(3500 * time.Millisecond))
	if n.e.Leading(web) {
		t.Fatal("leading at +3.5s while the renewal sent at +1s is unanswered")
	}
	close(proceed)
	n.waitFor("leading again once the late renewal is accepted", func() bool { return n.e.Leading(web) })
	term, _ := n.e.Term(web)
	if diff := cmp.Diff(Term{Deadline: t0.Add(4 * time.Second), Expiry: t0.Add(6 * time.Second)}, term); diff != "" {
		t.Errorf("Term after the late renewal (-want +got):\n%s", diff)
	}
	n.clk.Set(t0.Add(4 * time.Second))
	if n.e.Leading(web) {
		t.Error("leading at +4s: the renewal was sent at +1s")
	}
}

// A follower waits LeaseDuration from its own sighting of a record,
// whatever renewTime (another node's clock) says.
func TestSkewSafeExpiry(t *testing.T) {
	tests := []struct {
		name      string
		renewTime time.Time
		seenAgain time.Duration // the holder renews when the clock is here (0: never)
		takeover  time.Duration
	}{
		{name: "renewTime an hour in the past", renewTime: t0.Add(-time.Hour), takeover: 5 * time.Second},
		{name: "renewTime an hour in the future", renewTime: t0.Add(time.Hour), takeover: 5 * time.Second},
		{name: "renewTime now", renewTime: t0, takeover: 5 * time.Second},
		{name: "a renewal seen at +3s restarts the wait", renewTime: t0.Add(-time.Hour), seenAgain: 3 * time.Second, takeover: 8 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPIServer(t)
			a.hold(web, "node2", "boot-2", tt.renewTime)
			n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
			n.start()
			n.e.Campaign(web)
			n.waitRacesArmed(1, t0.Add(5*time.Second))
			if tt.seenAgain > 0 {
				n.clk.Set(t0.Add(tt.seenAgain))
				a.hold(web, "node2", "boot-2", tt.renewTime.Add(tt.seenAgain))
				n.waitRacesArmed(1, t0.Add(tt.takeover))
			}
			if !n.e.HeldByOther(web) {
				t.Error("HeldByOther = false while node2's hold is live")
			}

			n.clk.Set(t0.Add(tt.takeover - time.Nanosecond))
			if w := n.writes(); w != 0 || n.e.Leading(web) {
				t.Fatalf("%d writes, leading %v before the hold expired by our own observation", w, n.e.Leading(web))
			}
			n.clk.Set(t0.Add(tt.takeover))
			n.waitFor("taking over the expired lease", func() bool { return n.e.Leading(web) })
			if tr := a.transitions(web); tr != 1 {
				t.Errorf("leaseTransitions = %d, want 1", tr)
			}
		})
	}
}

// A node that starts while another holds Leases must not take them: its
// cache fills before its event handler has seen every record, and a record
// in the cache not yet observed is a fresh sighting, never an expired one.
func TestLateJoinerTreatsUnobservedRecordAsFresh(t *testing.T) {
	a := newAPIServer(t)
	keys := []Key{{Namespace: "default", Name: "kubevip-a"}, {Namespace: "default", Name: "kubevip-b"}}
	for _, k := range keys {
		a.hold(k, "node1", "boot-1", t0.Add(-time.Hour))
	}
	n := newNode(t, a, clocktest.New(t0), "node2", "boot-2")
	blocked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	n.hook = func(Key) { // a slow consumer: the handler stops at its first record
		once.Do(func() { close(blocked) })
		<-release
	}
	for _, k := range keys {
		n.e.Campaign(k)
	}
	n.start()
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before Run stops
	waitClosed(t, blocked, "the handler's first record")
	n.waitRacesArmed(len(keys), t0.Add(5*time.Second))

	n.e.mu.Lock()
	seen := len(n.e.observed)
	n.e.mu.Unlock()
	if seen != 1 {
		t.Fatalf("the handler saw %d records, want 1 (the other waits behind the slow notify)", seen)
	}
	if w := n.writes(); w != 0 {
		t.Errorf("%d lease writes by the late joiner, want 0", w)
	}

	releaseOnce.Do(func() { close(release) })
	n.waitFor("the handler to see every record", func() bool { return n.observed(keys[0]) && n.observed(keys[1]) })
	n.clk.Set(t0.Add(5*time.Second - time.Nanosecond))
	for _, k := range keys {
		if n.e.Leading(k) || !n.e.HeldByOther(k) {
			t.Errorf("%s: Leading %v, HeldByOther %v; want node1 to keep it", k, n.e.Leading(k), n.e.HeldByOther(k))
		}
	}
	if w := n.writes(); w != 0 {
		t.Errorf("%d lease writes by the late joiner before node1's hold expired, want 0", w)
	}
}

// A 409 on an acquisition is never retried over the same record: the race
// waits for the informer to show what changed.
func TestConflictOnAcquireWaitsForTheInformer(t *testing.T) {
	a := newAPIServer(t)
	a.hold(web, "", "", t0) // released
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	var once atomic.Bool
	n.cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if once.CompareAndSwap(false, true) {
			return true, nil, conflict()
		}
		return false, nil, nil
	})
	n.start()
	n.waitFor("the informer to show the lease", func() bool { return n.observed(web) })
	n.e.Campaign(web)
	n.waitFor("the conflicted acquisition", func() bool { return n.writes() == 1 })
	n.waitRaceIdle()

	n.clk.Step(time.Minute)
	if w := n.writes(); w != 1 || n.e.Leading(web) {
		t.Fatalf("%d writes, leading %v a minute after the 409 with an unchanged cache; want 1 write", w, n.e.Leading(web))
	}

	a.hold(web, "", "", t0.Add(time.Minute)) // the record changes: look again
	n.waitFor("acquiring the changed record", func() bool { return n.e.Leading(web) })
	if w := n.writes(); w != 2 {
		t.Errorf("%d writes, want 2 (the conflicted one, then one over the new record)", w)
	}
}

// A 409 on an acquisition because another node took the Lease first: the
// race re-evaluates from the informer and waits for that hold to expire.
func TestConflictOnAcquireSeesTheWinner(t *testing.T) {
	a := newAPIServer(t)
	a.hold(web, "", "", t0) // released
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	var once atomic.Bool
	n.cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if once.CompareAndSwap(false, true) {
			a.hold(web, "node2", "boot-2", t0) // node2 wins the race for the released lease
		}
		return false, nil, nil // our update now carries a stale resourceVersion
	})
	n.start()
	n.waitFor("the informer to show the lease", func() bool { return n.observed(web) })
	n.e.Campaign(web)
	n.waitRacesArmed(1, t0.Add(5*time.Second))
	if w := n.writes(); w != 1 || n.e.Leading(web) || !n.e.HeldByOther(web) {
		t.Fatalf("%d writes, leading %v, HeldByOther %v; want 1 write and node2 holding", w, n.e.Leading(web), n.e.HeldByOther(web))
	}
	if h, _ := a.holder(web); h != "node2" {
		t.Errorf("lease held by %q, want node2", h)
	}
}

// A 409 on a renewal means someone else wrote the Lease: step down at once,
// well before the deadline.
func TestConflictOnRenewStepsDown(t *testing.T) {
	a := newAPIServer(t)
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	n.start()
	n.lead(web)
	r := &renewals{f: func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, conflict() }}
	n.cs.PrependReactor("update", "leases", r.react)
	before := n.notified(web)

	n.clk.Set(t0.Add(time.Second))
	n.waitFor("the step-down notification", func() bool { return n.notified(web) > before })
	if n.e.Leading(web) {
		t.Error("leading after a 409 on the renewal")
	}
	n.waitRaceIdle()
	if c := r.calls.Load(); c != 1 {
		t.Errorf("%d updates, want 1: nothing is written over the record the renewal lost on", c)
	}
}

// The orders in which a renewal's 409 (proceed) and the deadline can end a
// term.
func deadlineFirst(n *node, proceed chan<- struct{}, deadline func()) {
	deadline()
	close(proceed)
	n.waitRaceIdle()
}

func conflictFirst(n *node, proceed chan<- struct{}, deadline func()) {
	close(proceed)
	n.waitRaceIdle()
	deadline()
}

func together(n *node, proceed chan<- struct{}, deadline func()) {
	stepped := make(chan struct{})
	go func() {
		deadline()
		close(stepped)
	}()
	close(proceed)
	waitClosed(n.t, stepped, "the deadline timer")
	n.waitRaceIdle()
}

// Bug 1: the deadline timer and a renewal's 409 both end a term. Whichever
// comes first, or both at once, the step-down is reported exactly once.
// (On the fake clock the clock's own lock orders the two goroutines, so
// -race sees an unlocked read only on the real clock: see the next test.)
func TestRenewConflictRacesDeadline(t *testing.T) {
	tests := []struct {
		name string
		end  func(n *node, proceed chan<- struct{}, deadline func())
	}{
		{name: "deadline first", end: deadlineFirst},
		{name: "409 first", end: conflictFirst},
		{name: "together", end: together},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPIServer(t)
			n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
			n.start()
			n.lead(web)
			entered, proceed := make(chan struct{}), make(chan struct{})
			var updates atomic.Int32
			n.cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
				if updates.Add(1) == 1 {
					close(entered)
					<-proceed
				}
				return true, nil, conflict()
			})
			before := n.notified(web)

			n.clk.Set(t0.Add(time.Second))
			waitClosed(t, entered, "the renewal sent at +1s")
			tt.end(n, proceed, func() { n.clk.Set(t0.Add(3 * time.Second)) })

			if n.e.Leading(web) {
				t.Error("leading after the deadline and a 409")
			}
			if got := n.notified(web) - before; got != 1 {
				t.Errorf("the step-down was notified %d times, want once", got)
			}
			// The deadline wakes the race; it must not write over the
			// record its renewal lost on.
			if got := updates.Load(); got != 1 {
				t.Errorf("%d updates, want 1 (the renewal)", got)
			}
		})
	}
}

// The same race on the real clock, where nothing but Elector.mu orders the
// deadline timer's goroutine and the race goroutine: the 409 comes back just
// after the deadline passed. (Bug 1 was an unlocked read of the hold here;
// -race reports it.) The sleep only orders the two; nothing asserts timing.
func TestRenewConflictAfterDeadlineRealClock(t *testing.T) {
	if testing.Short() {
		t.Skip("takes two seconds of real time")
	}
	a := newAPIServer(t)
	n := newNodeWith(t, a, nil, Config{Identity: "node1", Instance: "boot-1",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second})
	n.start()
	n.lead(web)
	term, _ := n.e.Term(web)
	n.cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		time.Sleep(time.Until(term.Deadline) + 500*time.Millisecond)
		return true, nil, conflict()
	})
	before := n.notified(web)
	// Wait without polling Leading: reads of the hold in between would
	// push the deadline timer's write out of the race detector's history.
	n.waitFor("the 409 to be handled", func() bool {
		n.e.mu.Lock()
		defer n.e.mu.Unlock()
		return n.e.races[web].conflict != nil
	})
	if n.e.Leading(web) {
		t.Error("leading after the deadline and a 409")
	}
	if got := n.notified(web) - before; got != 1 {
		t.Errorf("the step-down was notified %d times, want once", got)
	}
}

// Resign releases the Lease and a follower takes it over at once, without
// waiting for it to expire.
func TestResignWakesFollowers(t *testing.T) {
	a := newAPIServer(t)
	n1 := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	n2 := newNode(t, a, clocktest.New(t0), "node2", "boot-2")
	n1.start()
	n1.lead(web)
	n2.start()
	n2.e.Campaign(web)
	n2.waitRacesArmed(1, t0.Add(5*time.Second))

	if err := n1.e.Resign(context.Background(), web); err != nil {
		t.Fatal(err)
	}
	if n1.e.Leading(web) || n1.e.Campaigning(web) {
		t.Error("node1 still leading or campaigning after Resign")
	}
	n2.waitFor("node2 to take over the released lease", func() bool { return n2.e.Leading(web) })
	if e := n2.clk.Elapsed(); e != 0 {
		t.Errorf("node2's clock moved by %v; the takeover must not wait for expiry", e)
	}
	if h, i := a.holder(web); h != "node2" || i != "boot-2" {
		t.Errorf("lease held by %s/%s, want node2/boot-2", h, i)
	}
}

// An agent restarted with the same node name but a new instance id does not
// assume it holds the Lease its previous life wrote: it takes it over once
// the record went two retry periods without a renewal (the predecessor
// exited), not after the whole lease; a record it wrote itself it renews at
// once; a predecessor that keeps renewing keeps it.
func TestRestartedInstance(t *testing.T) {
	tests := []struct {
		name          string
		instance      string
		takeover      time.Duration // when the node leads
		wantTransited int32
	}{
		{name: "new instance waits two retry periods", instance: "boot-2", takeover: 2 * time.Second, wantTransited: 1},
		{name: "same instance renews its own record at once", instance: "boot-1", takeover: 0, wantTransited: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPIServer(t)
			a.hold(web, "node1", "boot-1", t0)
			n := newNode(t, a, clocktest.New(t0), "node1", tt.instance)
			n.start()
			n.waitFor("the informer to show the lease", func() bool { return n.observed(web) })
			n.e.Campaign(web)
			if tt.takeover > 0 {
				n.waitRacesArmed(1, t0.Add(tt.takeover))
				if w := n.writes(); w != 0 || n.e.Leading(web) || !n.e.HeldByOther(web) {
					t.Fatalf("%d writes, leading %v, HeldByOther %v; want the previous instance's hold respected",
						w, n.e.Leading(web), n.e.HeldByOther(web))
				}
				n.clk.Set(t0.Add(tt.takeover))
			}
			n.waitFor("leading", func() bool { return n.e.Leading(web) })
			if h, i := a.holder(web); h != "node1" || i != tt.instance {
				t.Errorf("lease held by %s/%s, want node1/%s", h, i, tt.instance)
			}
			if tr := a.transitions(web); tr != tt.wantTransited {
				t.Errorf("leaseTransitions = %d, want %d", tr, tt.wantTransited)
			}
		})
	}
}

// A predecessor that still runs (an overlapping restart on one node) and
// renews every retry period keeps its Lease: the new instance never writes.
func TestRestartedInstanceLeavesARenewingPredecessor(t *testing.T) {
	a := newAPIServer(t)
	a.hold(web, "node1", "boot-1", t0)
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-2")
	n.start()
	n.waitFor("the informer to show the lease", func() bool { return n.observed(web) })
	n.e.Campaign(web)
	n.waitRacesArmed(1, t0.Add(2*time.Second))
	for i := 1; i <= 6; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		n.clk.Set(at)
		a.hold(web, "node1", "boot-1", at) // the predecessor renews
		n.waitFor("the renewal observed", func() bool {
			n.e.mu.Lock()
			defer n.e.mu.Unlock()
			return n.e.observed[web].renew.Equal(at)
		})
		n.waitRacesArmed(1, at.Add(2*time.Second))
	}
	if w := n.writes(); w != 0 || n.e.Leading(web) {
		t.Errorf("%d writes, leading %v over a predecessor renewing every second", w, n.e.Leading(web))
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(failsafe):
		t.Fatalf("gave up waiting for %s", what)
	}
}

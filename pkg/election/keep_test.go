package election

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

// fakeKeeper vouches with reports lag old while vouch is set.
type fakeKeeper struct {
	clk *clocktest.Fake

	mu        sync.Mutex
	vouch     bool
	lag       time.Duration
	epoch     uint64
	from      time.Time
	reachable bool
}

func (k *fakeKeeper) Vouched() (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.clk.Now().Add(-k.lag), k.vouch
}

func (k *fakeKeeper) Epoch() (uint64, time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.epoch, k.from, k.reachable
}

func (k *fakeKeeper) Fresh() time.Duration { return time.Second }

func (k *fakeKeeper) set(f func(k *fakeKeeper)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(k)
}

func keeperNode(t *testing.T, a *apiServer, name string) (*node, *fakeKeeper) {
	clk := clocktest.New(t0)
	k := &fakeKeeper{clk: clk, reachable: true, lag: 200 * time.Millisecond}
	return newNodeWith(t, a, clk, Config{Identity: name, Instance: name + "-1", Clock: clk, Keeper: k}), k
}

// failRenewals makes every Lease update of n fail until the returned
// flag is cleared.
func failRenewals(n *node) *atomic.Bool {
	var fail atomic.Bool
	fail.Store(true)
	n.cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fail.Load() {
			return true, nil, errFake
		}
		return false, nil, nil
	})
	return &fail
}

// The holder rule: past the renew deadline a hold is kept only while the
// Keeper vouches, with a term computed from its since; it ends at once
// when the Keeper stops vouching (KeeperChanged) or when since+T passes.
func TestKeptOnlyWhileVouched(t *testing.T) {
	for _, signalled := range []bool{true, false} {
		a := newAPIServer(t)
		n, k := keeperNode(t, a, "node1")
		n.start()
		n.lead(web)
		failRenewals(n)
		k.set(func(k *fakeKeeper) { k.vouch, k.reachable = true, false })
		before := n.notified(web)

		n.clk.Set(t0.Add(3 * time.Second)) // the renew deadline
		n.clk.Set(t0.Add(30 * time.Second))
		term, ok := n.e.Term(web)
		since := t0.Add(30*time.Second - 200*time.Millisecond)
		if !ok {
			t.Fatal("not leading 30 s into an outage the Keeper vouches for")
		}
		if diff := cmp.Diff(Term{Deadline: since.Add(time.Second), Expiry: since.Add(5 * time.Second)}, term); diff != "" {
			t.Errorf("kept Term (-want +got):\n%s", diff)
		}
		if n.e.KeptCount() != 1 || n.notified(web) != before {
			t.Errorf("kept %d, %d notifications while kept; want 1 kept, none", n.e.KeptCount(), n.notified(web)-before)
		}

		k.set(func(k *fakeKeeper) { k.vouch = false })
		if signalled {
			n.e.KeeperChanged()
		} else {
			n.clk.Set(term.Deadline)
		}
		if n.e.Leading(web) || n.notified(web)-before != 1 {
			t.Errorf("signalled=%v: leading %v, %d notifications after the Keeper stopped vouching; want stepped down, 1",
				signalled, n.e.Leading(web), n.notified(web)-before)
		}
		k.set(func(k *fakeKeeper) { k.vouch = true })
		n.clk.Set(t0.Add(time.Minute))
		if n.e.Leading(web) {
			t.Errorf("signalled=%v: a hold that ended came back without an accepted write", signalled)
		}
	}
}

// Without a Keeper's vouch, the renew deadline is the end, as before.
func TestNotKeptWithoutVouch(t *testing.T) {
	a := newAPIServer(t)
	n, k := keeperNode(t, a, "node1")
	n.start()
	n.lead(web)
	failRenewals(n)
	k.set(func(k *fakeKeeper) { k.reachable = false })
	n.clk.Set(t0.Add(3 * time.Second))
	if n.e.Leading(web) || n.e.KeptCount() != 0 {
		t.Error("kept past the renew deadline without a vouch")
	}
}

// When the API server is back, a kept hold renews and reports how long
// it was kept.
func TestKeptThenRenewed(t *testing.T) {
	a := newAPIServer(t)
	clk := clocktest.New(t0)
	k := &fakeKeeper{clk: clk, reachable: true, lag: 200 * time.Millisecond}
	var mu sync.Mutex
	var kept []time.Duration
	n := newNodeWith(t, a, clk, Config{Identity: "node1", Instance: "node1-1", Clock: clk, Keeper: k,
		Kept: func(key Key, d time.Duration) { mu.Lock(); kept = append(kept, d); mu.Unlock() }})
	n.start()
	n.lead(web)
	r := failRenewals(n)
	k.set(func(k *fakeKeeper) { k.vouch, k.reachable = true, false })
	// At the renew deadline the renewal fails and the hold is kept; the
	// race retries a retry period after that failed write.
	n.clk.Set(t0.Add(3 * time.Second))
	n.waitRacesArmed(1, t0.Add(4*time.Second))
	n.waitFor("the hold kept", func() bool { return n.e.KeptCount() == 1 })
	r.Store(false) // the API server is back
	n.clk.Set(t0.Add(4 * time.Second))
	n.waitFor("the kept hold renewed", func() bool { return n.e.KeptCount() == 0 && n.e.Leading(web) })
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]time.Duration{time.Second}, kept); diff != "" {
		t.Errorf("Kept reported (-want +got):\n%s", diff)
	}
}

// The follower rule: while this node cannot reach the API nothing is
// acquired, and after it regains it (epoch 1 from +20s) a Lease last seen
// changing long ago expires only LeaseDuration after the regain.
func TestFollowerClocksStartAfresh(t *testing.T) {
	a := newAPIServer(t)
	a.hold(web, "node2", "node2-1", t0)
	n, k := keeperNode(t, a, "node1")
	k.set(func(k *fakeKeeper) { k.reachable = false })
	n.start()
	n.waitObserved(web)
	n.e.Campaign(web)
	n.clk.Set(t0.Add(20 * time.Second))
	if w := n.writes(); w != 0 {
		t.Fatalf("%d writes while the API is unreachable by this node", w)
	}
	regain := t0.Add(20 * time.Second)
	k.set(func(k *fakeKeeper) { k.reachable, k.epoch, k.from = true, 1, regain })
	n.clk.Set(regain.Add(5*time.Second - time.Millisecond))
	if !n.e.HeldByOther(web) {
		t.Error("node2's Lease counted as expired within LeaseDuration of the regain")
	}
	if w := n.writes(); w != 0 {
		t.Fatalf("%d writes within LeaseDuration of regaining the API", w)
	}
	n.clk.Set(regain.Add(5 * time.Second))
	n.waitFor("taking over LeaseDuration after the regain", func() bool { return n.e.Leading(web) })
}

// A vouch extends the Term even before the renew deadline, so the kernel
// lifetime of a holder's address never lapses at the end of its last
// renewal's term while it may keep.
func TestVouchExtendsTermBeforeDeadline(t *testing.T) {
	a := newAPIServer(t)
	n, k := keeperNode(t, a, "node1")
	n.start()
	n.lead(web)
	failRenewals(n)
	n.clk.Set(t0.Add(2500 * time.Millisecond))
	before, _ := n.e.Term(web)
	k.set(func(k *fakeKeeper) { k.vouch, k.reachable = true, false })
	got, ok := n.e.Term(web)
	since := t0.Add(2300 * time.Millisecond)
	want := Term{Deadline: before.Deadline, Expiry: since.Add(5 * time.Second)}
	if d := since.Add(time.Second); d.After(want.Deadline) {
		want.Deadline = d
	}
	if diff := cmp.Diff(want, got); !ok || diff != "" {
		t.Errorf("Term while vouched (ok %v; -want +got):\n%s", ok, diff)
	}
}

// A renewal abandoned by this node (its answer too late) that the API
// server applied anyway makes the next renewal 409: the node renews over
// its own landed write instead of stepping down.
func TestOwnLateWriteLandedKeepsLeading(t *testing.T) {
	a := newAPIServer(t)
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	n.start()
	n.lead(web)
	var landed atomic.Bool
	n.cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if landed.CompareAndSwap(false, true) {
			a.hold(web, "node1", "boot-1", t0) // our abandoned write, applied late
			return true, nil, conflict()
		}
		return false, nil, nil
	})
	before := n.notified(web)
	n.clk.Set(t0.Add(time.Second))
	n.waitFor("a renewal over the landed write", func() bool {
		return n.writes() >= 2 && a.get(web).Spec.RenewTime.Time.Equal(t0.Add(time.Second))
	})
	if !n.e.Leading(web) || n.notified(web) != before {
		t.Errorf("leading %v, %d notifications; want still leading, none", n.e.Leading(web), n.notified(web)-before)
	}
}

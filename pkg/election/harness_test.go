package election

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
)

// t0 is where every test's fake clock starts.
var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// failsafe bounds every wait for the elector's goroutines or the informer;
// only a failing test waits that long.
const failsafe = 10 * time.Second

var leasesGVR = coordinationv1.SchemeGroupVersion.WithResource("leases")

// apiServer is one Lease store shared by the fake clientsets of several
// nodes, with the API server's optimistic concurrency: every write gets a
// new resourceVersion and an update carrying a stale one gets 409.
type apiServer struct {
	t       *testing.T
	tracker k8stesting.ObjectTracker

	mu sync.Mutex // serializes writes: read-compare-write is atomic
	rv int
}

func newAPIServer(t *testing.T) *apiServer {
	return &apiServer{t: t, tracker: k8stesting.NewObjectTracker(scheme.Scheme, scheme.Codecs.UniversalDecoder())}
}

// clientset returns one node's client of the store. Each node has its own,
// so a reactor that hangs one node's writes does not block the others.
func (a *apiServer) clientset() *fake.Clientset {
	cs := &fake.Clientset{}
	cs.AddReactor("create", "leases", func(action k8stesting.Action) (bool, runtime.Object, error) {
		l, err := a.write(action.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease), true)
		return true, l, err
	})
	cs.AddReactor("update", "leases", func(action k8stesting.Action) (bool, runtime.Object, error) {
		l, err := a.write(action.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease), false)
		return true, l, err
	})
	cs.AddReactor("*", "*", k8stesting.ObjectReaction(a.tracker))
	cs.AddWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if w, ok := action.(k8stesting.WatchActionImpl); ok {
			opts = w.ListOptions
		}
		w, err := a.tracker.Watch(action.GetResource(), action.GetNamespace(), opts)
		if err != nil {
			return true, nil, err
		}
		return true, labelFiltered(w, opts.LabelSelector), nil
	})
	return cs
}

// write stores l as the API server would: create fails if it exists,
// update fails on a stale resourceVersion.
func (a *apiServer) write(l *coordinationv1.Lease, create bool) (*coordinationv1.Lease, error) {
	l = l.DeepCopy()
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, err := a.tracker.Get(leasesGVR, l.Namespace, l.Name)
	switch {
	case create && err == nil:
		return nil, apierrors.NewAlreadyExists(leasesGVR.GroupResource(), l.Name)
	case !create && err != nil:
		return nil, err
	case !create && cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion:
		return nil, apierrors.NewConflict(leasesGVR.GroupResource(), l.Name, errors.New("the object has been modified"))
	}
	a.rv++
	l.ResourceVersion = strconv.Itoa(a.rv)
	if create {
		err = a.tracker.Create(leasesGVR, l, l.Namespace)
	} else {
		err = a.tracker.Update(leasesGVR, l, l.Namespace)
	}
	if err != nil {
		return nil, err
	}
	return l.DeepCopy(), nil
}

// get returns the stored Lease.
func (a *apiServer) get(key Key) *coordinationv1.Lease {
	a.t.Helper()
	obj, err := a.tracker.Get(leasesGVR, key.Namespace, key.Name)
	if err != nil {
		a.t.Fatalf("get %s: %v", key, err)
	}
	return obj.(*coordinationv1.Lease)
}

// hold makes another writer the holder of key, as of renew by its clock.
func (a *apiServer) hold(key Key, holder, instance string, renew time.Time) {
	a.t.Helper()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Namespace: key.Namespace, Name: key.Name,
		Labels: map[string]string{ManagedByLabel: ManagedByValue},
	}}
	create := true
	if obj, err := a.tracker.Get(leasesGVR, key.Namespace, key.Name); err == nil {
		l, create = obj.(*coordinationv1.Lease).DeepCopy(), false
	}
	micro := metav1.NewMicroTime(renew)
	dur := int32(5)
	l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &holder, &micro, &dur
	l.Annotations = map[string]string{InstanceAnnotation: instance}
	if _, err := a.write(l, create); err != nil {
		a.t.Fatalf("hold %s for %s: %v", key, holder, err)
	}
}

// holder returns the holder identity and instance stored for key.
func (a *apiServer) holder(key Key) (string, string) {
	l := a.get(key)
	h := ""
	if l.Spec.HolderIdentity != nil {
		h = *l.Spec.HolderIdentity
	}
	return h, l.Annotations[InstanceAnnotation]
}

// transitions returns the stored leaseTransitions of key (unset: 0).
func (a *apiServer) transitions(key Key) int32 {
	if tr := a.get(key).Spec.LeaseTransitions; tr != nil {
		return *tr
	}
	return 0
}

// node is one agent's elector on its own fake clientset.
type node struct {
	t   *testing.T
	e   *Elector
	cs  *fake.Clientset
	clk *clocktest.Fake

	mu    sync.Mutex
	notes []Key
	hook  func(Key) // extra notify behavior, e.g. blocking
}

// newNode returns an elector for name/instance, not yet running.
func newNode(t *testing.T, a *apiServer, clk *clocktest.Fake, name, instance string) *node {
	t.Helper()
	return newNodeWith(t, a, clk, Config{Identity: name, Instance: instance, Clock: clk})
}

// newNodeWith returns an elector for cfg, not yet running; clk is nil if
// cfg.Clock is not a fake.
func newNodeWith(t *testing.T, a *apiServer, clk *clocktest.Fake, cfg Config) *node {
	t.Helper()
	n := &node{t: t, cs: a.clientset(), clk: clk}
	e, err := New(cfg, kubeclienttest.Wrap(n.cs), n.notify, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n.e = e
	return n
}

func (n *node) notify(k Key) {
	n.mu.Lock()
	n.notes = append(n.notes, k)
	hook := n.hook
	n.mu.Unlock()
	if hook != nil {
		hook(k)
	}
}

// notified returns how many notifications key has had.
func (n *node) notified(key Key) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, k := range n.notes {
		if k == key {
			c++
		}
	}
	return c
}

// start runs the elector until the test ends and waits for its cache.
func (n *node) start() {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.e.Run(ctx) }()
	n.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				n.t.Errorf("Run: %v", err)
			}
		case <-time.After(failsafe):
			n.t.Error("Run did not return after its context ended")
		}
	})
	n.waitFor("the lease cache to sync", n.e.HasSynced)
}

// writes counts the Lease writes (create and update, accepted or not) this
// node has sent.
func (n *node) writes() int {
	return len(slices.DeleteFunc(n.cs.Actions(), func(a k8stesting.Action) bool {
		return a.GetResource() != leasesGVR || (a.GetVerb() != "create" && a.GetVerb() != "update")
	}))
}

// waitFor polls cond after every change of the fake clock and every
// millisecond (the informer runs on real goroutines) until it holds. It
// only bounds the wait; nothing here depends on how long it took.
func (n *node) waitFor(what string, cond func() bool) {
	n.t.Helper()
	giveUp := time.After(failsafe)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		var changed <-chan struct{}
		if n.clk != nil {
			changed = n.clk.Changed()
		}
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-giveUp:
			if n.clk == nil {
				n.t.Fatalf("gave up waiting for %s", what)
			}
			n.t.Fatalf("gave up waiting for %s; clock at +%v, timers %v", what, n.clk.Elapsed(), n.clk.Timers())
		}
	}
}

// raceTimers returns the state of the races' step timers, one per started
// race (a race whose first step has not armed one yet counts as Fired:
// its step is due).
func (n *node) raceTimers() []clocktest.TimerState {
	n.e.mu.Lock()
	races := make([]*race, 0, len(n.e.races))
	for _, r := range n.e.races {
		races = append(races, r)
	}
	n.e.mu.Unlock()
	out := make([]clocktest.TimerState, 0, len(races))
	for _, r := range races {
		if s, started := r.run.timerState(n.clk); started {
			out = append(out, s)
		}
	}
	return out
}

// waitRacesArmed waits until every race of the node (want of them) has
// finished its step and armed its timer for at.
func (n *node) waitRacesArmed(want int, at time.Time) {
	n.t.Helper()
	n.waitFor("race timers armed for +"+at.Sub(t0).String(), func() bool {
		ts := n.raceTimers()
		return len(ts) == want && !slices.ContainsFunc(ts, func(s clocktest.TimerState) bool {
			return s.State != clocktest.Armed || !s.At.Equal(at)
		})
	})
}

// waitRaceIdle waits until the only race waits for the informer alone
// (its timer stopped).
func (n *node) waitRaceIdle() {
	n.t.Helper()
	n.waitFor("the race to wait for the informer", func() bool {
		ts := n.raceTimers()
		return len(ts) == 1 && ts[0].State == clocktest.Stopped
	})
}

// waitObserved waits until the handler has recorded key's Lease: the cache
// syncs when the store has the first list, before the handler has seen
// every record (an unobserved record counts as fresh in acquisitions, but
// HeldByOther knows only what was observed).
func (n *node) waitObserved(key Key) {
	n.t.Helper()
	n.waitFor(key.String()+" observed", func() bool {
		n.e.mu.Lock()
		defer n.e.mu.Unlock()
		_, ok := n.e.observed[key]
		return ok
	})
}

// lead campaigns for key and waits until the node leads it.
func (n *node) lead(key Key) {
	n.t.Helper()
	n.e.mu.Lock()
	o, seen := n.e.observed[key]
	newHolder := !seen || !n.e.mine(o)
	n.e.mu.Unlock()
	want := n.notified(key) + 1 // leading starts
	if newHolder {
		want++ // the handler sees the holder change
	}
	n.e.Campaign(key)
	n.waitFor("leading "+key.String(), func() bool { return n.e.Leading(key) })
	// The lister is updated before the event handlers run: leading can
	// start (and notify) before the handler has recorded our write, and the
	// handler records it before it notifies the new holder. Wait for both
	// notifications, so a test counting them from here sees only the ones
	// it causes.
	n.waitFor("our record observed and notified", func() bool {
		n.e.mu.Lock()
		o, ok := n.e.observed[key]
		mine := ok && n.e.mine(o)
		n.e.mu.Unlock()
		return mine && n.notified(key) >= want
	})
}

// labelFiltered passes only the events of objects matching selector, as
// the API server's watch does (the fake tracker's does not filter).
func labelFiltered(w watch.Interface, selector string) watch.Interface {
	sel, err := labels.Parse(selector)
	if err != nil || sel.Empty() {
		return w
	}
	return watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
		m, err := meta.Accessor(ev.Object)
		return ev, err != nil || sel.Matches(labels.Set(m.GetLabels()))
	})
}

// holdForeign makes key held by holder as kube-vip writes it: no vigil
// label, no instance annotation.
func (a *apiServer) holdForeign(key Key, holder string, renew time.Time) {
	a.t.Helper()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	create := true
	if obj, err := a.tracker.Get(leasesGVR, key.Namespace, key.Name); err == nil {
		l, create = obj.(*coordinationv1.Lease).DeepCopy(), false
	}
	micro := metav1.NewMicroTime(renew)
	dur := int32(5)
	l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &holder, &micro, &dur
	if _, err := a.write(l, create); err != nil {
		a.t.Fatalf("hold %s for %s: %v", key, holder, err)
	}
}

// timerState is the state of u's step timer on clk, and whether u was
// started. A step that is due or running counts as Fired, even while the
// timer an earlier step armed is still armed (a kick runs a step before
// that timer fires): only a finished step has set the timer it states.
func (u *runner) timerState(clk *clocktest.Fake) (s clocktest.TimerState, started bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.stepping:
		s = clocktest.TimerState{State: clocktest.Fired, Func: true}
	case u.timer != nil:
		s = clk.StateOf(u.timer)
	default:
		s = clocktest.TimerState{State: clocktest.Stopped, Func: true}
	}
	return s, u.ctx != nil
}

package heartbeat

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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
)

var (
	t0       = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	leasesGV = coordinationv1.SchemeGroupVersion.WithResource("leases")
	web      = election.Key{Namespace: "default", Name: "kubevip-web"}
)

const (
	failsafe = 10 * time.Second
	ns       = "kube-system"
)

// api is one Lease store with the API server's optimistic concurrency,
// shared by the fake clientsets of several nodes.
type api struct {
	t       *testing.T
	tracker k8stesting.ObjectTracker
	mu      sync.Mutex
	rv      int
}

func newAPI(t *testing.T) *api {
	return &api{t: t, tracker: k8stesting.NewObjectTracker(scheme.Scheme, scheme.Codecs.UniversalDecoder())}
}

func (a *api) clientset() *fake.Clientset {
	cs := &fake.Clientset{}
	cs.AddReactor("create", "leases", func(ac k8stesting.Action) (bool, runtime.Object, error) {
		l, err := a.write(ac.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease), true)
		return true, l, err
	})
	cs.AddReactor("update", "leases", func(ac k8stesting.Action) (bool, runtime.Object, error) {
		l, err := a.write(ac.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease), false)
		return true, l, err
	})
	cs.AddReactor("*", "*", k8stesting.ObjectReaction(a.tracker))
	cs.AddWatchReactor("*", func(ac k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if w, ok := ac.(k8stesting.WatchActionImpl); ok {
			opts = w.ListOptions
		}
		w, err := a.tracker.Watch(ac.GetResource(), ac.GetNamespace(), opts)
		return true, w, err
	})
	return cs
}

func (a *api) write(l *coordinationv1.Lease, create bool) (*coordinationv1.Lease, error) {
	l = l.DeepCopy()
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, err := a.tracker.Get(leasesGV, l.Namespace, l.Name)
	switch {
	case create && err == nil:
		return nil, apierrors.NewAlreadyExists(leasesGV.GroupResource(), l.Name)
	case !create && err != nil:
		return nil, err
	case !create && cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion:
		return nil, apierrors.NewConflict(leasesGV.GroupResource(), l.Name, errors.New("modified"))
	}
	a.rv++
	l.ResourceVersion = strconv.Itoa(a.rv)
	if create {
		err = a.tracker.Create(leasesGV, l, l.Namespace)
	} else {
		err = a.tracker.Update(leasesGV, l, l.Namespace)
	}
	return l.DeepCopy(), err
}

func (a *api) get(ns, name string) *coordinationv1.Lease {
	obj, err := a.tracker.Get(leasesGV, ns, name)
	if err != nil {
		return nil
	}
	return obj.(*coordinationv1.Lease)
}

// holder returns the stored holder/instance of key.
func (a *api) holder(key election.Key) (string, string) {
	l := a.get(key.Namespace, key.Name)
	if l == nil {
		return "", ""
	}
	return holderOf(l), l.Annotations[election.InstanceAnnotation]
}

// put stores a Lease as another writer would (mode "" = per-Service).
func (a *api) put(namespace, name, holder, instance, mode, durations string, renew time.Time) {
	a.t.Helper()
	l := a.get(namespace, name)
	create := l == nil
	if create {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	} else {
		l = l.DeepCopy()
	}
	l.Labels = map[string]string{election.ManagedByLabel: election.ManagedByValue}
	l.Annotations = map[string]string{election.InstanceAnnotation: instance}
	if mode != "" {
		l.Annotations[ModeAnnotation] = mode
	}
	if durations != "" {
		l.Annotations[DurationsAnnotation] = durations
	}
	micro, secs := metav1.NewMicroTime(renew), int32(5)
	l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &holder, &micro, &secs
	if _, err := a.write(l, create); err != nil {
		a.t.Fatalf("put %s/%s: %v", namespace, name, err)
	}
}

// node is one agent's elector.
type node struct {
	t       *testing.T
	e       *Elector
	cs      *fake.Clientset
	clk     *clocktest.Fake
	cancel  context.CancelFunc
	done    chan error
	once    sync.Once
	notesMu sync.Mutex
	notes   map[election.Key]int // notifications per key
}

func (n *node) note(k election.Key) {
	n.notesMu.Lock()
	n.notes[k]++
	n.notesMu.Unlock()
}

// notified counts the notifications of k so far.
func (n *node) notified(k election.Key) int {
	n.notesMu.Lock()
	defer n.notesMu.Unlock()
	return n.notes[k]
}

func newNode(t *testing.T, a *api, clk *clocktest.Fake, name, instance string, mod ...func(*Config)) *node {
	t.Helper()
	cfg := Config{Identity: name, Instance: instance, NodeNamespace: ns, Clock: clk}
	for _, m := range mod {
		m(&cfg)
	}
	n := &node{t: t, cs: a.clientset(), clk: clk, notes: map[election.Key]int{}}
	e, err := New(cfg, kubeclienttest.Wrap(n.cs), n.note, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n.e = e
	return n
}

// start runs the elector until stop or the end of the test.
func (n *node) start() {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.e.Run(ctx) }()
	n.t.Cleanup(n.stop)
	n.waitFor("cache synced", n.e.HasSynced)
}

// stop ends Run without releasing anything (a crash, as far as the API
// sees).
func (n *node) stop() {
	n.once.Do(func() {
		n.cancel()
		select {
		case <-n.done:
		case <-time.After(failsafe):
			n.t.Error("Run did not return")
		}
	})
}

func (n *node) waitFor(what string, cond func() bool) {
	n.t.Helper()
	giveUp := time.After(failsafe)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-n.clk.Changed():
		case <-tick.C:
		case <-giveUp:
			n.t.Fatalf("gave up waiting for %s; clock at +%v", what, n.clk.Elapsed())
		}
	}
}

// writes counts this node's create/update calls on Leases named like name
// (prefix match).
func (n *node) writes(prefix string) int {
	return len(slices.DeleteFunc(n.cs.Actions(), func(a k8stesting.Action) bool {
		if a.GetResource() != leasesGV || (a.GetVerb() != "create" && a.GetVerb() != "update") {
			return true
		}
		var obj runtime.Object
		switch x := a.(type) {
		case k8stesting.CreateAction:
			obj = x.GetObject()
		case k8stesting.UpdateAction:
			obj = x.GetObject()
		}
		l, ok := obj.(*coordinationv1.Lease)
		return !ok || len(l.Name) < len(prefix) || l.Name[:len(prefix)] != prefix
	}))
}

// settle lets the informer and workers catch up with the fake clock at its
// current time (they run on real goroutines).
func settle() { time.Sleep(50 * time.Millisecond) }

// lastBeat is the send time of the node's last accepted heartbeat.
func (n *node) lastBeat() time.Time {
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	return n.e.beat.lastSent
}

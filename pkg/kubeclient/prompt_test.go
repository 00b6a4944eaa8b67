package kubeclient_test

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
)

// events records what a handler heard, as "op name", in order.
type events struct {
	mu  sync.Mutex
	all []string
}

func (e *events) add(op string, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		op, obj = op+"(final state unknown)", d.Obj
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, op+" "+obj.(*coordinationv1.Lease).Name)
}

func (e *events) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.all...)
}

func (e *events) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { e.add("add", obj) },
		UpdateFunc: func(_, obj any) { e.add("update", obj) },
		DeleteFunc: func(obj any) { e.add("delete", obj) },
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runPrompt(t *testing.T, p *kubeclient.PromptCache) {
	t.Helper()
	var g kubeclient.Informers
	g.Add(p)
	ctx, cancel := context.WithCancel(t.Context())
	g.Start(ctx.Done())
	t.Cleanup(func() { cancel(); g.Shutdown() })
	waitUntil(t, "the first list", p.HasSynced)
}

// A prompt cache lists through the tweak, stores transformed objects
// indexed by namespace, and tells its handler of every change after the
// cache has it.
func TestPromptCache(t *testing.T) {
	fc := fake.NewClientset(lease("ours", map[string]string{"a": "b"}), lease("theirs", nil))
	cs := kubeclienttest.Wrap(fc)
	var ev events
	var p *kubeclient.PromptCache
	h := ev.handler().(cache.ResourceEventHandlerFuncs)
	add := h.AddFunc
	h.AddFunc = func(obj any) {
		if _, ok, _ := p.GetIndexer().Get(obj); !ok {
			t.Errorf("handler told of %s before the cache had it", obj.(*coordinationv1.Lease).Name)
		}
		add(obj)
	}
	p, err := kubeclient.NewPromptCache(cs.Leases("kube-system"), cs, &coordinationv1.Lease{}, kubeclient.PromptOptions{
		InformerOptions: kubeclient.InformerOptions{
			Tweak: func(o *metav1.ListOptions) { o.LabelSelector = "a=b" },
			Transform: func(obj any) (any, error) {
				obj.(*coordinationv1.Lease).ManagedFields = nil
				return obj, nil
			},
		},
		Retry:   10 * time.Millisecond,
		Handler: h,
	})
	if err != nil {
		t.Fatal(err)
	}
	runPrompt(t, p)
	leases := fc.CoordinationV1().Leases("kube-system")
	if _, err := leases.Create(t.Context(), lease("new", map[string]string{"a": "b"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l := lease("ours", map[string]string{"a": "b"})
	l.Spec.HolderIdentity = new("node1")
	if _, err := leases.Update(t.Context(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := leases.Delete(t.Context(), "new", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"add ours", "add new", "update ours", "delete new"}
	waitUntil(t, "four events", func() bool { return len(ev.get()) >= len(want) })
	if diff := cmp.Diff(want, ev.get()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	objs, err := p.GetIndexer().ByIndex(cache.NamespaceIndex, "kube-system")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].(*coordinationv1.Lease).ManagedFields != nil || *objs[0].(*coordinationv1.Lease).Spec.HolderIdentity != "node1" {
		t.Errorf("cached %+v, want the updated labelled Lease without managedFields", objs)
	}
}

// refused is what dialling a stopped API server returns.
func refused() error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

// While the API server refuses connections the cache retries every Retry:
// after a relist and eight refused watches in a row (by then a shared
// informer backs off for a minute or more: 0.8 s doubling up to 30 s,
// jittered) a change made once the API server is back reaches the handler
// at once. The relist reports what went missing meanwhile as deleted.
func TestPromptCacheRetriesEveryRetry(t *testing.T) {
	fc := fake.NewClientset(lease("gone", nil), lease("kept", nil))
	first := watch.NewFake()
	var watches atomic.Int32
	fc.PrependWatchReactor("leases", func(k8stesting.Action) (bool, watch.Interface, error) {
		switch n := watches.Add(1); {
		case n == 1:
			return true, first, nil
		case n <= 9:
			return true, nil, refused()
		}
		return false, nil, nil // the tracker's watch
	})
	cs := kubeclienttest.Wrap(fc)
	var ev events
	p, err := kubeclient.NewPromptCache(cs.Leases("kube-system"), cs, &coordinationv1.Lease{}, kubeclient.PromptOptions{
		Retry: 20 * time.Millisecond, Handler: ev.handler(),
	})
	if err != nil {
		t.Fatal(err)
	}
	runPrompt(t, p)
	waitUntil(t, "the first watch", func() bool { return watches.Load() >= 1 })
	leases := fc.CoordinationV1().Leases("kube-system")
	if err := leases.Delete(t.Context(), "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The first watch misses the delete and ends as too old: relist.
	first.Error(&metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired, Message: "too old resource version"})
	waitUntil(t, "the watch after the refused ones", func() bool { return watches.Load() >= 10 })
	if _, err := leases.Create(t.Context(), lease("new", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"add gone", "add kept", "update kept", "delete(final state unknown) gone", "add new"}
	waitUntil(t, "the new Lease", func() bool { return len(ev.get()) >= len(want) })
	if diff := cmp.Diff(want, ev.get()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// A prompt cache needs a retry interval.
func TestPromptCacheNeedsRetry(t *testing.T) {
	cs := kubeclienttest.Wrap(fake.NewClientset())
	if _, err := kubeclient.NewPromptCache(cs.Leases(""), cs, &coordinationv1.Lease{}, kubeclient.PromptOptions{}); err == nil {
		t.Error("no error for a zero retry interval")
	}
}

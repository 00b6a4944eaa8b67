package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
)

// rebalanceFixture: node-a leads every Service of objs; the elector names
// node-b as the successor of each.
func rebalanceFixture(t *testing.T, objs []runtime.Object, keys ...string) *fixture {
	t.Helper()
	f := newFixture(t, defaultConfig(), objs...)
	for _, k := range keys {
		f.el.leading[lease(k)] = true
		f.el.successor[lease(k)] = nodeB
	}
	f.mustSync(keys...)
	f.flushStatus()
	f.log.take()
	f.events()
	f.drainQueue()
	return f
}

// Only a Service that can move without a gap is handed over: alone on its
// address, by L2, on its own Lease, to a node that may announce it.
func TestRebalanceChoosesWhatMayMove(t *testing.T) {
	tests := []struct {
		name string
		objs []runtime.Object
		keys []string
		want []string // queued for a handover
	}{
		{"cluster policy, successor eligible",
			withEndpoints(service("web", vip10), nodeA), []string{"default/web"}, []string{"default/web"}},
		{"local policy, no endpoint on the successor",
			withEndpoints(service("web", vip10, local()), nodeA), []string{"default/web"}, nil},
		{"local policy, an endpoint on the successor",
			withEndpoints(service("web", vip10, local()), nodeA, nodeB), []string{"default/web"}, []string{"default/web"}},
		{"successor excluded from load balancing",
			objects(withEndpoints(service("web", vip10), nodeA), []runtime.Object{node(nodeB, excludedByLabel)}), []string{"default/web"}, nil},
		{"shared address",
			objects(withEndpoints(service("a", vip10, withPorts(80)), nodeA), withEndpoints(service("b", vip10, withPorts(443)), nodeA)),
			[]string{"default/a", "default/b"}, nil},
		{"first of two by key, one at a time",
			objects(withEndpoints(service("b", vip11), nodeA), withEndpoints(service("a", vip10), nodeA)),
			[]string{"default/a", "default/b"}, []string{"default/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := rebalanceFixture(t, tt.objs, tt.keys...)
			f.a.rebalanceOne()
			if diff := cmp.Diff(tt.want, f.drainQueue()); diff != "" {
				t.Errorf("handed over (-want +got):\n%s", diff)
			}
		})
	}
}

// A handover withdraws the address before the Lease is resigned, then
// campaigns again (the elector ranks this node below the new holder); a
// Service this node ranks first for is left where it is.
func TestRebalanceHandover(t *testing.T) {
	const key = "default/web"
	f := rebalanceFixture(t, withEndpoints(service("web", vip10), nodeA), key)
	f.a.rebalanceOne()
	f.mustSync(f.drainQueue()...)
	if diff := cmp.Diff([]string{"down " + vip10, "resign default/kubevip-web"}, f.log.take()); diff != "" {
		t.Errorf("handover calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Normal VIPReleased"}, f.events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	f.el.heldByOther[lease(key)] = true // node-b took it
	f.mustSync(f.drainQueue()...)
	if diff := cmp.Diff([]string{"campaign default/kubevip-web"}, f.log.take()); diff != "" {
		t.Errorf("after the handover (-want +got):\n%s", diff)
	}
	f.a.rebalanceOne()
	if diff := cmp.Diff([]string(nil), f.drainQueue()); diff != "" {
		t.Errorf("handed over again while not leading (-want +got):\n%s", diff)
	}
}

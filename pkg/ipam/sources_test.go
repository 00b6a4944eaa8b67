package ipam

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// fakeSource is an extra pool source.
type fakeSource struct {
	mu    sync.Mutex
	pools []SourcePool
}

func (s *fakeSource) Name() string { return "MetalLB" }
func (s *fakeSource) Synced() bool { return true }
func (s *fakeSource) Pools() []SourcePool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pools
}

func (s *fakeSource) set(pools ...SourcePool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pools = pools
}

func sourcePool(name, first, last string, auto bool) SourcePool {
	return SourcePool{
		Pool: allocator.Pool{Name: name, AutoAssign: auto,
			Ranges: []allocator.Range{{Start: netip.MustParseAddr(first), End: netip.MustParseAddr(last)}}},
		Object: &corev1.ObjectReference{Kind: "IPAddressPool", Namespace: "metallb-system", Name: name},
	}
}

// An extra source's pools serve Services (by name too); a pool overlapping
// another source's gets a Warning on its object and no address is given
// twice; a pool whose name is taken is left out with a Warning; a removed
// pool leaves its Services their addresses, with a Warning.
func TestExtraPoolSource(t *testing.T) {
	src := &fakeSource{}
	src.set(sourcePool("big", "10.0.0.1", "10.0.0.1", true), sourcePool("small-pool", "10.1.0.0", "10.1.0.3", false))
	again := &fakeSource{}
	dup := sourcePool("big", "10.2.0.0", "10.2.0.3", true)
	dup.Object.Name = "big-again"
	again.set(dup)
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}, Sources: []PoolSource{src, again}},
		configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.2"}))
	h.create(service("plain"))
	h.create(service("named", withAnnotation(kube.AnnotationPool, "small-pool")))
	if got := h.allocated("named"); got != "10.1.0.0" {
		t.Errorf("named got %s, want 10.1.0.0 from small-pool", got)
	}
	h.create(service("second"))
	a, b := h.allocated("plain"), h.allocated("second")
	if a == b || !strings.HasPrefix(a, "10.0.0.") || !strings.HasPrefix(b, "10.0.0.") {
		t.Errorf("plain %s, second %s: want the two addresses of big and the ConfigMap range, distinct", a, b)
	}
	h.eventually("overlap told on the IPAddressPool", func() bool { return len(h.rec.find("big", "PoolOverlap")) == 1 })
	h.eventually("a taken name told", func() bool { return len(h.rec.find("big-again", "PoolNameTaken")) == 1 })

	src.set(sourcePool("big", "10.0.0.1", "10.0.0.1", true))
	h.ctl.PoolsChanged()
	h.eventually("the Service of the removed pool warned", func() bool { return len(h.rec.find("ns/named", "AddressOutsidePool")) == 1 })
	if got := h.addrs("named"); got != "10.1.0.0" {
		t.Errorf("named has %q after its pool went, want it kept", got)
	}
}

// A Service whose address is only in its status (MetalLB gave it) keeps
// it: the allocator writes it where the agents read it, not the pool's
// first free address.
func TestAdoptsAddressInStatus(t *testing.T) {
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}},
		configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.4"}))
	s := service("from-metallb")
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.0.0.3"}}
	h.create(s)
	h.create(service("new"))
	if got := h.allocated("from-metallb"); got != "10.0.0.3" {
		t.Errorf("from-metallb got %s, want its status address 10.0.0.3", got)
	}
	if got := h.allocated("new"); got == "10.0.0.3" {
		t.Errorf("new got the adopted address %s", got)
	}
	h.eventually("IPAdopted", func() bool { return len(h.rec.find("ns/from-metallb", "IPAdopted")) == 1 })
}

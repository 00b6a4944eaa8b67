//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/vigil-lb/vigil/pkg/ipam"
	"github.com/vigil-lb/vigil/testing/lab"
)

// allocatorEnv runs the allocator inside every agent, each with its own
// identity, its Lease in the test namespace.
func (c *cluster) startWithAllocator(extra ...string) {
	for _, h := range c.n.Nodes {
		c.startAgent(h.Name, append([]string{"svc_allocator=true", "POD_NAME=vigil-" + h.Name, "POD_NAMESPACE=" + c.ns}, extra...)...)
	}
	for _, h := range c.n.Nodes {
		c.waitReady(h.Name)
	}
}

// createPool creates a cluster-scoped IPPool for this test's namespace only
// and deletes it when the test ends.
func (c *cluster) createPool(name string, addrs []string, auto bool) {
	c.t.Helper()
	dyn := c.dynamic()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "vigil.io/v1alpha1", "kind": "IPPool",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"addresses": toAny(addrs), "autoAssign": auto, "namespaces": []any{c.ns},
		},
	}}
	if _, err := dyn.Resource(ipam.IPPoolResource).Create(c.ctx, obj, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create IPPool %s: %v", name, err)
	}
	c.t.Cleanup(func() {
		_ = dyn.Resource(ipam.IPPoolResource).Delete(c.ctx, name, metav1.DeleteOptions{})
	})
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// allocated waits until the Service's kube-vip.io/loadbalancerIPs is set.
func (c *cluster) allocated(name string, within time.Duration) []netip.Addr {
	c.t.Helper()
	s := c.waitService(name, within, "an allocated address", func(s *corev1.Service) bool {
		return s.Annotations["kube-vip.io/loadbalancerIPs"] != ""
	})
	var out []netip.Addr
	for _, f := range strings.Split(s.Annotations["kube-vip.io/loadbalancerIPs"], ",") {
		out = append(out, netip.MustParseAddr(f))
	}
	return out
}

func inRange(a netip.Addr, first, last string) bool {
	return !a.Less(netip.MustParseAddr(first)) && !netip.MustParseAddr(last).Less(a)
}

// Pools: three Services exposed with no address get three distinct
// addresses from the pool, announced and reachable; exhaustion is an Event;
// a deleted Service's address is reused; an autoAssign: false pool is used
// only when named; IPv6 and dual-stack Services; a malformed pool is
// rejected by the API server.
func TestAllocatorPools(t *testing.T) {
	c := newCluster(t, 3)
	c.startWithAllocator()
	c.serveAll(8080)
	pool := "e2e-" + c.ns
	c.createPool(pool, []string{"198.18.0.160-198.18.0.162", "fd00:1ab::160/126"}, true)
	c.createPool(pool+"-manual", []string{"198.18.0.170/31"}, false)

	var got []netip.Addr
	for _, name := range []string{"a", "b", "c"} {
		c.kubectl("create", "deployment", name, "--image=registry.invalid/"+name+":1")
		c.setEndpoints(name, c.allNodes()...)
		c.kubectl("expose", "deployment", name, "--type=LoadBalancer", "--port=8080")
	}
	for _, name := range []string{"a", "b", "c"} {
		ips := c.allocated(name, 10*time.Second)
		if len(ips) != 1 || !inRange(ips[0], "198.18.0.160", "198.18.0.162") {
			t.Fatalf("%s got %v, want one address in 198.18.0.160-162", name, ips)
		}
		got = append(got, ips[0])
		holder, _ := c.waitOwner(ips[0], "", "", 5*time.Second)
		if r, err := c.n.Dial(c.ctx, ips[0], 8080); err != nil || r != holder {
			t.Errorf("client -> %s:8080 = %q (%v), want %s", ips[0], r, err, holder)
		}
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if len(slices.Compact(got)) != 3 {
		t.Errorf("addresses not distinct: %v", got)
	}
	c.waitEvent("a", "IPAllocated", 5*time.Second)

	// Exhausted: a fourth one waits with an Event.
	c.setEndpoints("d", c.allNodes()...)
	c.createService("d", nil)
	ev := c.waitEvent("d", "AllocationFailed", 10*time.Second)
	t.Logf("fourth service: %s", ev.Message)
	// Deleting b frees its address for d.
	freed := c.allocated("b", time.Second)[0]
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ips := c.allocated("d", 10*time.Second); len(ips) != 1 || ips[0] != freed {
		t.Errorf("d got %v, want b's freed %s", ips, freed)
	}

	// autoAssign: false is used only when asked for by name.
	c.setEndpoints("m", c.allNodes()...)
	c.createService("m", nil, withAnnotation("metallb.universe.tf/address-pool", pool+"-manual"))
	if ips := c.allocated("m", 10*time.Second); len(ips) != 1 || !inRange(ips[0], "198.18.0.170", "198.18.0.171") {
		t.Errorf("m got %v, want an address of the manual pool", ips)
	}

	// IPv6 and dual-stack.
	c.setEndpoints("six", c.allNodes()...)
	c.createService("six", nil, func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} })
	if ips := c.allocated("six", 10*time.Second); len(ips) != 1 || !ips[0].Is6() {
		t.Errorf("six got %v, want one IPv6 address", ips)
	} else {
		c.waitOwner(ips[0], "", "", 5*time.Second)
	}
	c.setEndpoints("dual", c.allNodes()...)
	c.createService("dual", nil, func(s *corev1.Service) {
		p := corev1.IPFamilyPolicyRequireDualStack
		s.Spec.IPFamilyPolicy = &p
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	})
	// The v4 range is full (a, c, d): dual-stack cannot be satisfied.
	c.waitEvent("dual", "AllocationFailed", 10*time.Second)
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ips := c.allocated("dual", 10*time.Second); len(ips) != 2 || !ips[0].Is4() || !ips[1].Is6() {
		t.Errorf("dual got %v, want IPv4 then IPv6", ips)
	}

	// kubectl shows the pool's counts.
	out := c.kubectl("get", "ippools", pool)
	t.Logf("kubectl get ippools:\n%s", out)
	if !strings.Contains(out, "IPV4 USED") {
		t.Errorf("no usage columns in kubectl get ippools")
	}
	if err := lab.WaitFor(c.ctx, 10*time.Second, func() bool {
		o := c.kubectl("get", "ippools", pool, "-o", "jsonpath={.status.ipv4.used}")
		return o == "3"
	}); err != nil {
		t.Errorf("pool status ipv4.used never showed 3: %s", c.kubectl("get", "ippools", pool, "-o", "yaml"))
	}

	// Overlapping pools are reported on the pool.
	c.createPool(pool+"-overlap", []string{"198.18.0.162/32"}, true)
	if err := lab.WaitFor(c.ctx, 10*time.Second, func() bool {
		o := c.kubectl("get", "ippools", pool+"-overlap", "-o", `jsonpath={.status.conditions[?(@.type=="Overlapping")].status}`)
		return o == "True"
	}); err != nil {
		t.Errorf("no Overlapping condition: %s", c.kubectl("get", "ippools", pool+"-overlap", "-o", "yaml"))
	}

	// Shrinking a pool never moves a live Service: it keeps its address and
	// hears about it.
	before := c.allocated("a", time.Second)
	obj, err := c.dynamic().Resource(ipam.IPPoolResource).Get(c.ctx, pool, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedSlice(obj.Object, []any{"198.18.0.163-198.18.0.165"}, "spec", "addresses"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.dynamic().Resource(ipam.IPPoolResource).Update(c.ctx, obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitEvent("a", "AddressOutsidePool", 10*time.Second)
	if after := c.allocated("a", time.Second); !slices.Equal(before, after) {
		t.Errorf("shrinking the pool moved a from %v to %v", before, after)
	}

	// The API server rejects malformed pools.
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "vigil.io/v1alpha1", "kind": "IPPool",
		"metadata": map[string]any{"name": pool + "-bad"},
		"spec":     map[string]any{"addresses": []any{"198.18.0.300/24"}},
	}}
	if _, err := c.dynamic().Resource(ipam.IPPoolResource).Create(c.ctx, bad, metav1.CreateOptions{}); err == nil {
		t.Errorf("API server accepted a malformed pool")
	}
}

// kube-vip-cloud-provider's ConfigMap (range-<namespace>) works as a pool,
// served by a standalone `vigil allocator` (the agents run without one).
func TestAllocatorConfigMap(t *testing.T) {
	c := newCluster(t, 2)
	c.startAll()
	alloc, err := c.n.Start(c.n.Nodes[0], "vigil-allocator", []string{
		"k8s_config_file=" + c.kubeconfig, "POD_NAME=allocator-0", "POD_NAMESPACE=" + c.ns,
	}, vigilBin(t), "allocator")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alloc.Stop(5 * time.Second) })
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubevip", Namespace: "kube-system"},
		Data: map[string]string{"range-" + c.ns: "198.18.0.180-198.18.0.181"}}
	if _, err := c.cs.CoreV1().ConfigMaps("kube-system").Create(c.ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.cs.CoreV1().ConfigMaps("kube-system").Delete(c.ctx, "kubevip", metav1.DeleteOptions{}) })
	c.setEndpoints("web", c.allNodes()...)
	c.createService("web", nil)
	ips := c.allocated("web", 10*time.Second)
	if len(ips) != 1 || !inRange(ips[0], "198.18.0.180", "198.18.0.181") {
		t.Fatalf("web got %v, want an address of range-%s", ips, c.ns)
	}
	c.waitOwner(ips[0], "", "", 5*time.Second)
}

// Two allocators; the leader is SIGKILLed during a burst of 100 Services:
// every Service gets an address and none is handed out twice.
func TestAllocatorFailoverDuringBurst(t *testing.T) {
	c := newCluster(t, 2)
	c.startWithAllocator()
	c.createPool("e2e-"+c.ns, []string{"198.18.1.0/24"}, true)
	leader := func() string {
		l, err := c.cs.CoordinationV1().Leases(c.ns).Get(c.ctx, "vigil-allocator", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return strings.TrimPrefix(*l.Spec.HolderIdentity, "vigil-")
	}
	var first string
	if err := lab.WaitFor(c.ctx, 10*time.Second, func() bool { first = leader(); return first != "" }); err != nil {
		t.Fatal("no allocator leader")
	}
	const n = 100
	for i := range n {
		c.createService(fmt.Sprintf("s%03d", i), nil)
		if i == 30 {
			c.agents[first].Kill()
			t.Logf("killed allocator leader %s after %d services", first, i+1)
		}
	}
	seen := map[netip.Addr]string{}
	for i := range n {
		name := fmt.Sprintf("s%03d", i)
		for _, a := range c.allocated(name, 30*time.Second) {
			if other, dup := seen[a]; dup {
				t.Errorf("%s handed to both %s and %s", a, other, name)
			}
			seen[a] = name
		}
	}
	t.Logf("100 services, %d distinct addresses; new leader %s", len(seen), leader())
}

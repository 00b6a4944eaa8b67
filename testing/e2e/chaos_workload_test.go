//go:build e2e

package e2e

import (
	"testing"

	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"

	"github.com/vigil-lb/vigil/testing/chaos/checker"
	"github.com/vigil-lb/vigil/testing/lab"
)

// chaosSvc is one Service of the campaign's workload as the campaign wants
// it; the checker is told the same through want().
type chaosSvc struct {
	name      string
	kind      string       // static, shared, local, auto, dhcp, upnp, v6, bgp
	addrs     []netip.Addr // asked for (none: allocator or DHCP)
	pool      string       // metallb.universe.tf/address-pool ("": none)
	share     string       // sharing group of a shared static address
	port      int32
	local     bool
	endpoints []string // nodes with a ready endpoint
	ignored   bool
}

// Address plan of the campaign (inside the lab LAN, clear of the nodes,
// the DHCP range and the router).
var (
	chaosStaticFirst = netip.MustParseAddr("198.18.0.60")
	chaosStaticLast  = netip.MustParseAddr("198.18.0.99")
	chaosPoolRange   = "198.18.0.100-198.18.0.149"
	chaosV6First     = netip.MustParseAddr("fd00:1ab::100")
	// BGP Services: the pool chaosBGPPool, which only a BGPAdvertisement
	// selects (announced to the lab router, never on the LAN).
	chaosBGPFirst = netip.MustParseAddr("198.18.0.150")
	chaosBGPLast  = netip.MustParseAddr("198.18.0.159")
)

const chaosBGPPool = "chaos-bgp"

// workload is the initial mix: per 51 Services, 14 static, 3 pairs sharing
// an address (ports differ), 6 Local with moving endpoints, 10 from the
// allocator, 3 from DHCP, 4 with UPnP forwards, 4 IPv6 and 4 announced by
// BGP only (2 of them Local with moving endpoints).
func (k *campaign) workload() []*chaosSvc {
	var out []*chaosSvc
	add := func(kind string, n int, f func(i int, s *chaosSvc)) {
		for i := range n {
			s := &chaosSvc{name: fmt.Sprintf("%s-%d", kind, i), kind: kind, port: 8080, endpoints: k.nodeNames()}
			f(i, s)
			out = append(out, s)
		}
	}
	add("shared", 6, func(i int, s *chaosSvc) {
		s.addrs = []netip.Addr{k.takeStatic()}
		if i%2 == 1 {
			s.addrs = out[len(out)-1].addrs
		}
		s.share, s.port = fmt.Sprintf("group-%d", i/2), int32(8080+i%2)
	})
	add("local", 6, func(i int, s *chaosSvc) {
		s.addrs, s.local, s.endpoints = []netip.Addr{k.takeStatic()}, true, k.someNodes()
	})
	add("upnp", 4, func(i int, s *chaosSvc) { s.addrs, s.port = []netip.Addr{k.takeStatic()}, int32(9001+i) })
	add("static", 14, func(_ int, s *chaosSvc) { s.addrs = []netip.Addr{k.takeStatic()} })
	add("v6", 4, func(i int, s *chaosSvc) {
		a := chaosV6First
		for range i {
			a = a.Next()
		}
		s.addrs = []netip.Addr{a}
	})
	add("bgp", 4, func(i int, s *chaosSvc) {
		s.addrs, s.pool = []netip.Addr{k.takeFrom(chaosBGPFirst, chaosBGPLast)}, chaosBGPPool
		if i%2 == 1 {
			s.local, s.endpoints = true, k.someNodes()
		}
	})
	add("auto", 10, func(int, *chaosSvc) {})
	add("dhcp", 3, func(int, *chaosSvc) {})
	return out
}

// takeStatic picks a free address of the static range at random.
func (k *campaign) takeStatic() netip.Addr { return k.takeFrom(chaosStaticFirst, chaosStaticLast) }

// takeFrom picks a free address of [first, last] at random.
func (k *campaign) takeFrom(first, last netip.Addr) netip.Addr {
	var free []netip.Addr
	for a := first; !last.Less(a); a = a.Next() {
		if !k.staticUsed(a) {
			free = append(free, a)
		}
	}
	if len(free) == 0 {
		return netip.Addr{}
	}
	a := free[k.rnd.Intn(len(free))]
	k.taken[a] = true
	return a
}

func (k *campaign) staticUsed(a netip.Addr) bool {
	if k.taken[a] {
		return true
	}
	for _, s := range k.svcs {
		if slices.Contains(s.addrs, a) {
			return true
		}
	}
	return false
}

// someNodes is a random set of 0–2 nodes (endpoints of a Local Service).
func (k *campaign) someNodes() []string {
	nodes := k.nodeNames()
	k.rnd.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	return nodes[:k.rnd.Intn(3)]
}

// object is the Service the API should hold for s.
func (s *chaosSvc) object(ns string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: ns, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": s.name},
			Ports:    []corev1.ServicePort{{Name: "p", Port: s.port, TargetPort: intstr.FromInt32(s.port), Protocol: corev1.ProtocolTCP}},
		},
	}
	switch s.kind {
	case "dhcp":
		svc.Spec.LoadBalancerIP = "0.0.0.0"
	case "auto":
	default:
		var as []string
		for _, a := range s.addrs {
			as = append(as, a.String())
		}
		svc.Annotations["kube-vip.io/loadbalancerIPs"] = strings.Join(as, ",")
	}
	if s.kind == "upnp" {
		svc.Annotations["kube-vip.io/forwardUPNP"] = "true"
	}
	if s.pool != "" {
		svc.Annotations["metallb.universe.tf/address-pool"] = s.pool
	}
	if s.ignored {
		svc.Annotations["kube-vip.io/ignore"] = "true"
	}
	if s.local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	return svc
}

// want is what the checker should require of s.
func (s *chaosSvc) want() checker.Service {
	// Either policy needs a ready endpoint: a Local Service flipped to
	// Cluster keeps the endpoints it had (none, after some flaps).
	w := checker.Service{Name: s.name, Addrs: s.addrs, Share: s.share, Managed: !s.ignored,
		Announce: !s.ignored && len(s.endpoints) > 0}
	if s.local {
		w.Eligible = append([]string{}, s.endpoints...)
	}
	return w
}

// apply creates or updates the Service and its EndpointSlice, then tells
// the checker.
func (k *campaign) apply(s *chaosSvc) error {
	if err := k.applyEndpoints(s); err != nil {
		return err
	}
	// vigil writes annotations and status meanwhile: retry on conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error { return k.applyService(s) })
	if err != nil {
		return fmt.Errorf("apply Service %s: %w", s.name, err)
	}
	k.chk.Want(now(), s.want())
	return nil
}

func (k *campaign) applyService(s *chaosSvc) error {
	svcs := k.c.cs.CoreV1().Services(k.c.ns)
	obj := s.object(k.c.ns)
	cur, err := svcs.Get(k.ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = svcs.Create(k.ctx, obj, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	cur.Spec.ExternalTrafficPolicy = obj.Spec.ExternalTrafficPolicy
	cur.Spec.LoadBalancerIP = obj.Spec.LoadBalancerIP
	for _, a := range []string{"kube-vip.io/ignore", "kube-vip.io/forwardUPNP"} {
		delete(cur.Annotations, a)
	}
	if s.kind != "auto" && s.kind != "dhcp" {
		delete(cur.Annotations, "kube-vip.io/loadbalancerIPs")
	}
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	for a, v := range obj.Annotations {
		cur.Annotations[a] = v
	}
	_, err = svcs.Update(k.ctx, cur, metav1.UpdateOptions{})
	return err
}

func (k *campaign) applyEndpoints(s *chaosSvc) error {
	ready := true
	var eps []discoveryv1.Endpoint
	for i, n := range s.endpoints {
		n := n
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.244.%d.10", i+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}, NodeName: &n,
		})
	}
	api := k.c.cs.DiscoveryV1().EndpointSlices(k.c.ns)
	name := s.name + "-chaos"
	cur, err := api.Get(k.ctx, name, metav1.GetOptions{})
	if err == nil {
		cur.Endpoints = eps
		_, err = api.Update(k.ctx, cur, metav1.UpdateOptions{})
	} else if apierrors.IsNotFound(err) {
		_, err = api.Create(k.ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: k.c.ns, Labels: map[string]string{discoveryv1.LabelServiceName: s.name}},
			AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps,
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("endpoints of %s: %w", s.name, err)
	}
	return nil
}

// remove deletes the Service (the checker first stops requiring it).
func (k *campaign) remove(s *chaosSvc) error {
	k.chk.Forget(now(), s.name)
	err := k.c.cs.CoreV1().Services(k.c.ns).Delete(k.ctx, s.name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete Service %s: %w", s.name, err)
	}
	_ = k.c.cs.DiscoveryV1().EndpointSlices(k.c.ns).Delete(k.ctx, s.name+"-chaos", metav1.DeleteOptions{})
	return nil
}

// apiServices lists the Services as the checker sees them: only addresses
// of the lab LAN (a UPnP Service also shows the gateway's WAN address).
func (k *campaign) apiServices(ctx context.Context) ([]checker.APIService, error) {
	l, err := k.c.cs.CoreV1().Services(k.c.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []checker.APIService
	for _, s := range l.Items {
		as := checker.APIService{Name: s.Name}
		for _, in := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && onLAN(a) {
				as.Ingress = append(as.Ingress, a)
			}
		}
		for _, f := range strings.Split(s.Annotations["kube-vip.io/loadbalancerIPs"], ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(f)); err == nil && onLAN(a) {
				as.Assigned = append(as.Assigned, a)
			}
		}
		out = append(out, as)
	}
	return out, nil
}

func onLAN(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && (lab.LANPrefix4.Contains(a) || lab.LANPrefix6.Contains(a))
}

// A Service with no ready endpoint is not to be announced under either
// policy (the LAN-liveness campaign once wanted a Cluster Service, flipped
// from Local after its endpoints flapped to none, announced).
func TestChaosWantNeedsAnEndpoint(t *testing.T) {
	for _, s := range []chaosSvc{
		{name: "cluster-none"}, {name: "local-none", local: true},
		{name: "cluster-one", endpoints: []string{"node1"}}, {name: "local-one", local: true, endpoints: []string{"node1"}},
	} {
		if got, want := s.want().Announce, len(s.endpoints) > 0; got != want {
			t.Errorf("%s: Announce = %v, want %v", s.name, got, want)
		}
	}
}

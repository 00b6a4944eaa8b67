//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/vigil-lb/vigil/pkg/crdconfig"
	"github.com/vigil-lb/vigil/testing/lab"
)

// bgpCluster is a lab with a BIRD router and a far client behind it; the
// agents peer with the router over IPv4 and IPv6 (kube-vip's variables).
// The nodes answer ARP as a default Linux does (arp_ignore=0), so the test
// proves vigil itself keeps BGP-only VIPs off the LAN.
func bgpCluster(t *testing.T, nodes int, env ...string) (*cluster, *lab.Router) {
	t.Helper()
	c := newCluster(t, nodes)
	r, err := c.n.StartRouter(c.ctx, lab.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range c.n.Nodes {
		if _, err := c.n.Exec(c.ctx, h, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.eth0.arp_ignore=0"); err != nil {
			t.Fatal(err)
		}
	}
	c.startAll(append([]string{"bgp_enable=true", "bgp_peers=198.18.0.254:65001,[fd00:1ab::fe]:65001",
		"bgp_hold_time=9", "bgp_keepalive_interval=3", "vip_arp=false"}, env...)...)
	c.serveAll(8080)
	return c, r
}

// waitHops waits until the router's route for ip goes via exactly the
// given nodes (none: no route) and returns how long that took.
func (c *cluster) waitHops(r *lab.Router, ip netip.Addr, within time.Duration, nodes ...string) time.Duration {
	c.t.Helper()
	var want []netip.Addr
	for _, n := range nodes {
		h := c.node(n)
		if ip.Is4() {
			want = append(want, h.IPv4)
		} else {
			want = append(want, h.IPv6)
		}
	}
	slices.SortFunc(want, netip.Addr.Compare)
	start := time.Now()
	var got []netip.Addr
	err := lab.WaitFor(c.ctx, within, func() bool {
		hops, err := r.NextHops(c.ctx, netip.PrefixFrom(ip, ip.BitLen()))
		if err != nil {
			return false
		}
		slices.SortFunc(hops, netip.Addr.Compare)
		got = hops
		return slices.Equal(hops, want)
	})
	if err != nil {
		c.t.Fatalf("router route for %s via %v after %v, want via %v (%v)", ip, got, within, want, nodes)
	}
	return time.Since(start)
}

// Cluster policy: one ECMP route via every node; the far client connects
// through the router; no node answers ARP for the VIP on the LAN; one node
// writes the status. SIGTERM removes that node's path only; ignore and
// delete withdraw the route everywhere.
func TestBGPClusterECMP(t *testing.T) {
	c, r := bgpCluster(t, 3, "svc_election=false")
	vip := mustAddr("198.18.0.150")
	c.setEndpoints("web", c.allNodes()...)
	created := time.Now()
	c.createService("web", []string{vip.String()})
	c.waitHops(r, vip, 15*time.Second, c.allNodes()...)
	t.Logf("create -> ECMP route via 3 nodes after %v (sessions may still be coming up)", time.Since(created))
	seen := map[string]bool{}
	for range 20 {
		if got, err := r.DialFromFar(c.ctx, vip, 8080); err == nil {
			seen[got] = true
		}
	}
	if len(seen) == 0 {
		t.Fatalf("the far client never reached %s through the router", vip)
	}
	t.Logf("far client reached %v", seen)
	if got := c.owner(vip); got != "" {
		t.Errorf("%s answered ARP for a BGP-only VIP on the LAN", got)
	}
	s := c.waitService("web", 5*time.Second, "announced by BGP", func(s *corev1.Service) bool {
		cond := condition(s, "vigil.io/Announced")
		return cond != nil && cond.Status == metav1.ConditionTrue && strings.Contains(cond.Message, "BGP") && slices.Contains(ingressIPs(s), vip.String())
	})
	if h := s.Annotations["kube-vip.io/vipHost"]; h != "" {
		t.Errorf("vipHost %q on a Service every node advertises", h)
	}

	stopped := time.Now()
	if _, ok := c.agents["node1"].Stop(5 * time.Second); !ok {
		t.Fatal("node1's agent did not stop within 5s of SIGTERM")
	}
	c.waitHops(r, vip, 5*time.Second, "node2", "node3")
	t.Logf("SIGTERM node1 -> its path gone after %v", time.Since(stopped))

	c.kubectl("annotate", "svc", "web", "kube-vip.io/ignore=true")
	c.waitHops(r, vip, 5*time.Second)
	c.kubectl("annotate", "svc", "web", "kube-vip.io/ignore-")
	c.waitHops(r, vip, 5*time.Second, "node2", "node3")
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitHops(r, vip, 5*time.Second)
}

// Local policy: only nodes with a ready local endpoint advertise; the route
// follows the endpoint and is withdrawn when there is none. IPv6 too.
func TestBGPLocalAndIPv6(t *testing.T) {
	c, r := bgpCluster(t, 3, "svc_election=false")
	vip, vip6 := mustAddr("198.18.0.151"), mustAddr("fd00:1ab::151")
	c.setEndpoints("loc", "node2")
	c.createService("loc", []string{vip.String(), vip6.String()}, withLocal())
	c.waitHops(r, vip, 15*time.Second, "node2")
	c.waitHops(r, vip6, 5*time.Second, "node2")
	if got, err := r.DialFromFar(c.ctx, vip, 8080); err != nil || got != "node2" {
		t.Errorf("far client reached %q (%v), want node2", got, err)
	}
	moved := time.Now()
	c.setEndpoints("loc", "node3")
	c.waitHops(r, vip, 5*time.Second, "node3")
	t.Logf("Local endpoint node2 -> node3: route moved after %v", time.Since(moved))
	c.setEndpoints("loc")
	c.waitHops(r, vip, 5*time.Second)
	c.waitHops(r, vip6, 5*time.Second)
	c.waitService("loc", 5*time.Second, "NoEligibleNode", func(s *corev1.Service) bool {
		cond := condition(s, "vigil.io/Announced")
		return cond != nil && cond.Reason == "NoEligibleNode"
	})
}

// svc_election=true with BGP (kube-vip's behaviour): only the Lease holder
// advertises; SIGTERM moves the route to another node.
func TestBGPElected(t *testing.T) {
	c, r := bgpCluster(t, 3, "svc_election=true")
	vip := mustAddr("198.18.0.152")
	c.setEndpoints("web", c.allNodes()...)
	c.createService("web", []string{vip.String()})
	s := c.waitService("web", 15*time.Second, "holder", func(s *corev1.Service) bool { return s.Annotations["kube-vip.io/vipHost"] != "" })
	holder := s.Annotations["kube-vip.io/vipHost"]
	c.waitHops(r, vip, 15*time.Second, holder)
	c.agents[holder].Stop(5 * time.Second)
	s = c.waitService("web", 10*time.Second, "new holder", func(s *corev1.Service) bool {
		h := s.Annotations["kube-vip.io/vipHost"]
		return h != "" && h != holder
	})
	c.waitHops(r, vip, 10*time.Second, s.Annotations["kube-vip.io/vipHost"])
}

// Kontena's per-node peers: a BGPPeer object whose nodeSelectors pick one
// node by kubernetes.io/hostname: only that node peers with the router, so
// only it carries the route (no bgp_peers at all).
func TestBGPPeerNodeSelectors(t *testing.T) {
	dyn := bgpCRDs(t, t.Context())
	c := newCluster(t, 3)
	r, err := c.n.StartRouter(c.ctx, lab.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	name := "tor-" + c.ns
	peer := object(t, `apiVersion: vigil.io/v1alpha1
kind: BGPPeer
metadata: {name: `+name+`}
spec:
  myASN: 65000
  peerASN: 65001
  peerAddress: 198.18.0.254
  holdTime: 9s
  routerID: 198.18.0.99
  nodeSelectors:
  - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node2]}]
`)
	if _, err := dyn.Resource(vigilGVR("bgppeers")).Create(c.ctx, peer, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(vigilGVR("bgppeers")).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	c.startAll("bgp_enable=true", "vip_arp=false", "svc_election=false")
	c.serveAll(8080)
	vip := mustAddr("198.18.0.153")
	c.setEndpoints("web", c.allNodes()...)
	c.createService("web", []string{vip.String()})
	c.waitHops(r, vip, 20*time.Second, "node2")
	out, err := r.Birdc(c.ctx, "show", "protocols")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "Established"); n != 1 {
		t.Errorf("router has %d established sessions, want 1 (node2's):\n%s", n, out)
	}
	// The BGPPeer's routerID is the one node2's speaker runs with.
	if out, _ := r.Birdc(c.ctx, "show", "protocols", "all"); !strings.Contains(out, "Neighbor ID:      198.18.0.99") {
		t.Errorf("router does not see router id 198.18.0.99 from node2:\n%s", out)
	}
	awaitSessions(t, c.ctx, dyn, name, metav1.ConditionTrue, []crdconfig.Session{{Node: "node2", State: "established"}})

	// A peer nobody answers, for node1 and node3: its status names them.
	dead := "dead-" + c.ns
	obj := object(t, `apiVersion: vigil.io/v1alpha1
kind: BGPPeer
metadata: {name: `+dead+`}
spec:
  myASN: 65000
  peerASN: 65009
  peerAddress: 198.18.0.249
  connectTime: 1s
  nodeSelectors:
  - matchExpressions: [{key: kubernetes.io/hostname, operator: NotIn, values: [node2]}]
`)
	if _, err := dyn.Resource(vigilGVR("bgppeers")).Create(c.ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(vigilGVR("bgppeers")).Delete(context.Background(), dead, metav1.DeleteOptions{})
	})
	st := awaitSessions(t, c.ctx, dyn, dead, metav1.ConditionFalse, nil)
	cond := meta.FindStatusCondition(st.Conditions, crdconfig.ConditionEstablished)
	if len(st.Sessions) != 2 || st.Sessions[0].Node != "node1" || st.Sessions[1].Node != "node3" ||
		!strings.Contains(cond.Message, "node1: ") || !strings.Contains(cond.Message, "node3: ") {
		t.Errorf("unanswered peer's status: sessions %+v, condition %+v", st.Sessions, cond)
	}
	t.Logf("unanswered peer: %s", cond.Message)
	c.waitHops(r, vip, 5*time.Second, "node2") // node2's route is untouched
}

// bgpPeerStatus is a BGPPeer's status as vigil writes it.
type bgpPeerStatus struct {
	Conditions []metav1.Condition  `json:"conditions"`
	Sessions   []crdconfig.Session `json:"sessions"`
}

// awaitSessions waits for a BGPPeer's Established condition to have status
// and, when want is not nil, its sessions to be want.
func awaitSessions(t *testing.T, ctx context.Context, dyn dynamic.Interface, name string, status metav1.ConditionStatus, want []crdconfig.Session) bgpPeerStatus {
	t.Helper()
	var st bgpPeerStatus
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		u, err := dyn.Resource(vigilGVR("bgppeers")).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		raw, _, _ := unstructured.NestedMap(u.Object, "status")
		st = bgpPeerStatus{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(st.Conditions, crdconfig.ConditionEstablished)
		return c != nil && c.Status == status && (want == nil || cmp.Equal(want, st.Sessions)), nil
	})
	if err != nil {
		t.Fatalf("BGPPeer %s: Established=%s with sessions %+v not reached (last %+v): %v", name, status, want, st, err)
	}
	return st
}

// A crash (cable pulled first, then the agent killed: a dead node sends
// nothing) removes that node's path by the router's hold timer (9 s), or
// with BFD 100 ms x 3 within a fraction of a second.
func TestBGPCrash(t *testing.T) {
	for _, tt := range []struct {
		name   string
		bfd    bool
		peers  string
		within time.Duration
	}{
		{"hold timer", false, "198.18.0.254:65001", 12 * time.Second},
		{"BFD", true, "198.18.0.254:65001:::::true;100;100;3", 2 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 2)
			r, err := c.n.StartRouter(c.ctx, lab.RouterOptions{BFD: tt.bfd})
			if err != nil {
				t.Fatal(err)
			}
			c.startAll("bgp_enable=true", "bgp_peers="+tt.peers, "bgp_hold_time=9", "bgp_keepalive_interval=3", "vip_arp=false", "svc_election=false")
			vip := mustAddr("198.18.0.154")
			c.setEndpoints("web", c.allNodes()...)
			c.createService("web", []string{vip.String()})
			c.waitHops(r, vip, 20*time.Second, "node1", "node2")
			if tt.bfd {
				if err := lab.WaitFor(c.ctx, 10*time.Second, func() bool {
					out, _ := r.Birdc(c.ctx, "show", "bfd", "sessions")
					return strings.Count(out, " Up ") >= 2
				}); err != nil {
					out, _ := r.Birdc(c.ctx, "show", "bfd", "sessions")
					t.Fatalf("BFD sessions not up:\n%s", out)
				}
			}
			// Cable first, so the kill's FIN never reaches the router.
			crashed := time.Now()
			if err := c.n.CutLAN(c.ctx, c.node("node1")); err != nil {
				t.Fatal(err)
			}
			c.agents["node1"].Kill()
			c.waitHops(r, vip, tt.within, "node2")
			t.Logf("crash of node1 (%s): its path gone after %v", tt.name, time.Since(crashed))
		})
	}
}

// One L2 pool and one BGP pool at once, chosen by MetalLB-style
// advertisement objects; the BGP pool's routes carry its advertisement's
// local preference and community (iBGP, so local preference is sent).
func TestBGPAdvertisementsPerPool(t *testing.T) {
	dyn := bgpCRDs(t, t.Context())
	c := newCluster(t, 2)
	r, err := c.n.StartRouter(c.ctx, lab.RouterOptions{NodeASN: 65001})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range c.n.Nodes {
		if _, err := c.n.Exec(c.ctx, h, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.eth0.arp_ignore=0"); err != nil {
			t.Fatal(err)
		}
	}
	suffix := c.ns
	for _, o := range []struct{ res, doc string }{
		{"bgpadvertisements", "apiVersion: vigil.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: routed-" + suffix + "}\nspec: {ipAddressPools: [routed], localPref: 150, communities: [\"65000:100\"]}\n"},
		{"bgpadvertisements", "apiVersion: vigil.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: routed-agg-" + suffix + "}\nspec: {ipAddressPools: [routed], aggregationLength: 30, communities: [\"65000:200\"]}\n"},
		{"l2advertisements", "apiVersion: vigil.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: lan-" + suffix + "}\nspec: {ipAddressPools: [lan]}\n"},
	} {
		obj := object(t, o.doc)
		if _, err := dyn.Resource(vigilGVR(o.res)).Create(c.ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		name := obj.GetName()
		res := o.res
		t.Cleanup(func() { _ = dyn.Resource(vigilGVR(res)).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	c.startAll("bgp_enable=true", "bgp_as=65001", "bgp_peers=198.18.0.254:65001", "svc_election=false")
	c.serveAll(8080)
	lanVIP, routedVIP := mustAddr("198.18.0.155"), mustAddr("198.18.0.156")
	c.setEndpoints("lan", c.allNodes()...)
	c.setEndpoints("routed", c.allNodes()...)
	c.createService("lan", []string{lanVIP.String()}, withAnnotation("metallb.universe.tf/address-pool", "lan"))
	c.createService("routed", []string{routedVIP.String()}, withAnnotation("metallb.universe.tf/address-pool", "routed"))
	// (iBGP: BIRD keeps one best path, no ECMP, so any node will do.)
	if err := lab.WaitFor(c.ctx, 20*time.Second, func() bool {
		hops, _ := r.NextHops(c.ctx, netip.PrefixFrom(routedVIP, 32))
		return len(hops) > 0
	}); err != nil {
		t.Fatalf("no route for the BGP pool's %s on the router", routedVIP)
	}
	c.waitOwner(lanVIP, "", "", 10*time.Second)
	if hops, _ := r.NextHops(c.ctx, netip.PrefixFrom(lanVIP, 32)); len(hops) != 0 {
		t.Errorf("the L2 pool's VIP is routed via %v", hops)
	}
	if got := c.owner(routedVIP); got != "" {
		t.Errorf("%s answered ARP for the BGP pool's VIP", got)
	}
	out, err := r.Birdc(c.ctx, "show", "route", "for", routedVIP.String(), "all")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"BGP.local_pref: 150", "(65000,100)"} {
		if !strings.Contains(out, want) {
			t.Errorf("router's route lacks %q:\n%s", want, out)
		}
	}
	// The second advertisement of the pool: the /30 aggregate, on its own,
	// with its own community.
	agg := netip.PrefixFrom(routedVIP, 30).Masked()
	out, err = r.Birdc(c.ctx, "show", "route", agg.String(), "all")
	if err != nil || !strings.Contains(out, agg.String()) || !strings.Contains(out, "(65000,200)") || strings.Contains(out, "(65000,100)") {
		all, _ := r.Birdc(c.ctx, "show", "route", "all")
		t.Errorf("router's aggregate %s (err %v), want it with community (65000,200) only:\n%s\nall routes:\n%s", agg, err, out, all)
	}
	// Deleting the Service withdraws the host route and the aggregate.
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "routed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitFor(c.ctx, 10*time.Second, func() bool {
		h32, _ := r.NextHops(c.ctx, netip.PrefixFrom(routedVIP, 32))
		h30, _ := r.NextHops(c.ctx, agg)
		return len(h32) == 0 && len(h30) == 0
	}); err != nil {
		t.Errorf("routes for the deleted Service still on the router: %v", err)
	}
}

// Without an election, BGP needs no API server to stay safe: every node cut
// off from the API for longer than a lease keeps advertising, and the far
// client keeps reaching the Service.
func TestBGPSurvivesAPIOutage(t *testing.T) {
	c, r := bgpCluster(t, 3, "svc_election=false")
	vip := mustAddr("198.18.0.157")
	c.setEndpoints("web", c.allNodes()...)
	c.createService("web", []string{vip.String()})
	c.waitHops(r, vip, 15*time.Second, c.allNodes()...)
	for _, h := range c.n.Nodes {
		if err := c.n.CutAPI(c.ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(8 * time.Second) // longer than the 5 s lease
	for time.Now().Before(deadline) {
		hops, err := r.NextHops(c.ctx, netip.PrefixFrom(vip, 32))
		if err != nil || len(hops) != 3 {
			t.Fatalf("API away for %v: route via %v (%v), want all 3 nodes", 8*time.Second-time.Until(deadline), hops, err)
		}
		if _, err := r.DialFromFar(c.ctx, vip, 8080); err != nil {
			t.Fatalf("far client cut off during the API outage: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, h := range c.n.Nodes {
		if err := c.n.RestoreAPI(c.ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	c.waitHops(r, vip, 5*time.Second, c.allNodes()...)
}

// A Local Service's only endpoint node loses its BGP session (its agent
// stalled, then its cable pulled, each for longer than the hold time):
// once the fault heals, the route is back within LeaseDuration + 1 s, the
// fault campaign's grace. GoBGP alone holds a dropped session idle for
// 5 s before it dials again; the speaker redials at once (pkg/bgp,
// redial.go).
func TestBGPSessionBackAfterNodeFault(t *testing.T) {
	c, r := bgpCluster(t, 2)
	vip := mustAddr("198.18.0.158")
	c.setEndpoints("web", "node2")
	c.createService("web", []string{vip.String()}, withLocal())
	c.waitHops(r, vip, 15*time.Second, "node2")
	grace := 6 * time.Second // vip_leaseduration's default + 1 s
	for _, f := range []struct {
		name      string
		cut, heal func() error
	}{
		{"agent stalled (SIGSTOP)",
			func() error { return c.agents["node2"].Signal(syscall.SIGSTOP) },
			func() error { return c.agents["node2"].Signal(syscall.SIGCONT) }},
		{"cable pulled",
			func() error { return c.n.CutLAN(c.ctx, c.node("node2")) },
			func() error { return c.n.RestoreLAN(c.ctx, c.node("node2")) }},
	} {
		if err := f.cut(); err != nil {
			t.Fatal(err)
		}
		c.waitHops(r, vip, 20*time.Second) // the router's hold timer (9 s) expires
		time.Sleep(3 * time.Second)
		if err := f.heal(); err != nil {
			t.Fatal(err)
		}
		took := c.waitHops(r, vip, 30*time.Second, "node2")
		if took > grace {
			t.Errorf("%s: route back %v after the heal, want within %v", f.name, took.Round(time.Millisecond), grace)
		} else {
			t.Logf("%s: route back %v after the heal", f.name, took.Round(time.Millisecond))
		}
	}
}

//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/vigil-lb/vigil/pkg/metallb"
	"github.com/vigil-lb/vigil/testing/lab"
)

// metallbCRDs applies manifests/metallb-crds.yaml (vigil manifest
// metallb-crds) and waits until the CRDs are established.
func metallbCRDs(t *testing.T, ctx context.Context) dynamic.Interface {
	t.Helper()
	lab.Require(t, cp)
	if err := cp.ApplyManifest(ctx, "manifests/metallb-crds.yaml"); err != nil {
		t.Fatal(err)
	}
	for _, r := range metallb.Resources {
		if out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", cp.AdminKubeconfig,
			"wait", "--for=condition=established", "--timeout=30s", "crd/"+r.Resource+".metallb.io").CombinedOutput(); err != nil {
			t.Fatalf("%s not established: %v\n%s", r.Resource, err, out)
		}
	}
	cfg, err := lab.RESTConfig(cp.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return dynamic.NewForConfigOrDie(cfg)
}

// metallbObjects creates MetalLB objects (YAML) in the test's namespace,
// which the agents read as MetalLB's (vigil_metallb_namespace).
func (c *cluster) metallbObjects(dyn dynamic.Interface, docs ...string) {
	c.t.Helper()
	for _, d := range docs {
		obj := object(c.t, d)
		gvr := metallbGVR(obj.GetKind())
		if _, err := dyn.Resource(gvr).Namespace(c.ns).Create(c.ctx, obj, metav1.CreateOptions{}); err != nil {
			c.t.Fatalf("create %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
}

// metallbGVR is the resource of one of MetalLB's kinds.
func metallbGVR(kind string) schema.GroupVersionResource {
	for _, r := range metallb.Resources {
		if r.Resource == strings.ToLower(kind)+"s" || kind == "Community" && r == metallb.Communities {
			return r
		}
	}
	return schema.GroupVersionResource{}
}

// watchOnly fails the test if any of ips is ever bound on a node other
// than allowed.
func (c *cluster) watchOnly(allowed string, ips ...netip.Addr) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var seen []string
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			for _, ip := range ips {
				for _, n := range c.nodesWith(ip) {
					if n != allowed {
						mu.Lock()
						seen = append(seen, n+" "+ip.String())
						mu.Unlock()
					}
				}
			}
		}
	})
	c.t.Cleanup(func() {
		close(stop)
		wg.Wait()
		if len(seen) > 0 {
			c.t.Errorf("bound outside %s (nodeSelectors): %v", allowed, slices.Compact(seen))
		}
	})
}

// MetalLB's tutorial, unchanged but for the lab's addresses: two
// IPAddressPools (a /24 with an IPv6 range, and a /30 with autoAssign
// false) and one L2Advertisement for both with nodeSelectors. A plain
// Service gets an address from the /24, one annotated
// metallb.universe.tf/address-pool: small-pool one from the /30, an IPv6
// Service one from the range; all are answered by ARP/NDP, only ever by
// the selected node (on eth0, the advertisement's interface); a pool
// advertised on interfaces: [eth9] only, which no node announces on, is
// never announced. A pool that is not valid (ranges overlap) gets a
// Warning Event and the rest keeps working; deleting a pool leaves its
// Service announced, with a Warning Event.
func TestMetalLBPoolsL2(t *testing.T) {
	dyn := metallbCRDs(t, t.Context())
	c := newCluster(t, 3)
	// The /24 is beside the lab's LAN: the client reaches it on-link.
	// (Addresses no other lab test uses: earlier tests' Services stay and
	// hold theirs.)
	if _, err := c.n.Exec(c.ctx, c.n.Client, "ip", "route", "add", "198.18.9.0/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	c.metallbObjects(dyn,
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: first-pool}\nspec: {addresses: [198.18.9.0/24, 'fd00:1ab::300-fd00:1ab::30f']}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: small-pool}\nspec: {addresses: [198.18.0.208/30], autoAssign: false}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: broken}\nspec: {addresses: [198.18.2.0/30, 198.18.2.2-198.18.2.5]}",
		"apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec: {ipAddressPools: [first-pool, small-pool], nodeSelectors: [{matchLabels: {kubernetes.io/hostname: node2}}], interfaces: [eth0]}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: elsewhere}\nspec: {addresses: [198.18.0.216/30], autoAssign: false}",
		"apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: eth9}\nspec: {ipAddressPools: [elsewhere], interfaces: [eth9]}",
	)
	c.startWithAllocator("vigil_metallb_namespace="+c.ns, "vip_interface=eth0")
	for _, name := range []string{"plain", "small", "six", "elsewhere"} {
		c.setEndpoints(name, c.allNodes()...)
	}
	c.createService("plain", nil)
	c.createService("small", nil, withAnnotation("metallb.universe.tf/address-pool", "small-pool"))
	c.createService("six", nil, func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} })
	c.createService("elsewhere", nil, withAnnotation("metallb.universe.tf/address-pool", "elsewhere"))
	plain, small, six := c.allocated("plain", 15*time.Second)[0], c.allocated("small", 10*time.Second)[0], c.allocated("six", 10*time.Second)[0]
	elsewhere := c.allocated("elsewhere", 10*time.Second)[0]
	c.watchOnly("node2", plain, small, six)
	c.watchOnly("(none: interfaces [eth9])", elsewhere)
	for _, tt := range []struct {
		ip          netip.Addr
		first, last string
	}{{plain, "198.18.9.0", "198.18.9.255"}, {small, "198.18.0.208", "198.18.0.211"}, {six, "fd00:1ab::300", "fd00:1ab::30f"}} {
		if !inRange(tt.ip, tt.first, tt.last) {
			t.Errorf("%s not in %s-%s", tt.ip, tt.first, tt.last)
		}
		c.waitOwner(tt.ip, "node2", "", 10*time.Second)
	}
	if got := c.owner(elsewhere); got != "" {
		t.Errorf("%s (L2Advertisement on eth9 only) answered by %s", elsewhere, got)
	}
	if ev := c.waitEvent("broken", "InvalidAddresses", 5*time.Second); !strings.Contains(ev.Message, "addresses") {
		t.Errorf("broken pool's event names no field: %s", ev.Message)
	}

	// The pool goes: its Service keeps the address, still answered, and
	// hears why.
	if err := dyn.Resource(metallb.IPAddressPools).Namespace(c.ns).Delete(c.ctx, "small-pool", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitEvent("small", "AddressOutsidePool", 10*time.Second)
	c.waitEvent("l2", "InvalidIpAddressPools", 5*time.Second)
	if got := c.allocated("small", time.Second); got[0] != small {
		t.Errorf("small now has %v, want %s kept", got, small)
	}
	if got := c.owner(small); got != "node2" {
		t.Errorf("%s answered by %q after its pool went, want node2", small, got)
	}
}

// Kontena Network Loadbalancer's shape: MetalLB's legacy ConfigMap with a
// layer2 pool and a bgp pool whose peer has node-selectors on
// kubernetes.io/hostname. Only the selected node peers with the lab's
// router and routes the bgp pool's Service; the layer2 pool's Service
// answers ARP and is not routed.
func TestMetalLBLegacyConfigMap(t *testing.T) {
	c := newCluster(t, 3)
	r, err := c.n.StartRouter(c.ctx, lab.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "config", Namespace: c.ns}, Data: map[string]string{"config": `
peers:
- peer-address: 198.18.0.254
  peer-asn: 65001
  my-asn: 65000
  hold-time: 9s
  node-selectors:
  - match-labels:
      kubernetes.io/hostname: node2
address-pools:
- name: lan
  protocol: layer2
  addresses: [198.18.0.205-198.18.0.206]
- name: routed
  protocol: bgp
  addresses: [198.18.3.0/28]
`}}
	if _, err := c.cs.CoreV1().ConfigMaps(c.ns).Create(c.ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.startWithAllocator("vigil_metallb_namespace="+c.ns, "bgp_enable=true", "svc_election=false")
	c.setEndpoints("lan", c.allNodes()...)
	c.setEndpoints("routed", c.allNodes()...)
	c.createService("lan", nil, withAnnotation("metallb.universe.tf/address-pool", "lan"))
	c.createService("routed", nil, withAnnotation("metallb.universe.tf/address-pool", "routed"))
	lanVIP, routedVIP := c.allocated("lan", 15*time.Second)[0], c.allocated("routed", 10*time.Second)[0]
	if !inRange(lanVIP, "198.18.0.205", "198.18.0.206") || !inRange(routedVIP, "198.18.3.0", "198.18.3.15") {
		t.Fatalf("lan %s, routed %s: want them from their pools", lanVIP, routedVIP)
	}
	c.waitHops(r, routedVIP, 20*time.Second, "node2")
	c.waitOwner(lanVIP, "", "", 10*time.Second)
	if hops, _ := r.NextHops(c.ctx, netip.PrefixFrom(lanVIP, 32)); len(hops) != 0 {
		t.Errorf("the layer2 pool's %s is routed via %v", lanVIP, hops)
	}
	if got := c.owner(routedVIP); got != "" {
		t.Errorf("%s answered ARP for the bgp pool's %s", got, routedVIP)
	}
	out, err := r.Birdc(c.ctx, "show", "protocols")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "Established"); n != 1 {
		t.Errorf("router has %d established sessions, want 1 (node2's):\n%s", n, out)
	}
}

// Taking over from MetalLB: a Service already has an address in its status
// (MetalLB gave it; no vigil annotation) when vigil starts. It keeps that
// address (not the pool's first), and is announced; the time from the
// agents' start to the first ARP answer is logged (vigil's part of the
// announcement gap in a switch; docs/migrate-metallb.md).
func TestMetalLBTakeOver(t *testing.T) {
	dyn := metallbCRDs(t, t.Context())
	c := newCluster(t, 2)
	c.metallbObjects(dyn,
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool}\nspec: {addresses: [198.18.0.176/30]}",
		"apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\n",
	)
	kept := mustAddr("198.18.0.178") // outside dnsmasq's range: a DHCP test's Service may still hold a 198.18.0.2xx address
	c.setEndpoints("web", c.allNodes()...)
	svc := c.createService("web", nil)
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: kept.String()}}
	if _, err := c.cs.CoreV1().Services(c.ns).UpdateStatus(c.ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, h := range c.n.Nodes {
		c.startAgent(h.Name, "svc_allocator=true", "POD_NAME=vigil-"+h.Name, "POD_NAMESPACE="+c.ns, "vigil_metallb_namespace="+c.ns)
	}
	c.waitOwner(kept, "", "", 15*time.Second)
	t.Logf("start -> announced: %v (agents started, none ready yet)", time.Since(start).Round(time.Millisecond))
	if got := c.allocated("web", 5*time.Second); len(got) != 1 || got[0] != kept {
		t.Errorf("web has %v, want the address it had, %s", got, kept)
	}
}

// vigil's metallb.io CRDs refuse what MetalLB's webhook refuses, naming
// the field, and accept MetalLB's objects as written, fields vigil does
// not implement included (vigil reports those by Event).
func TestMetalLBCRDValidation(t *testing.T) {
	dyn := metallbCRDs(t, t.Context())
	ns := "default"
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"pool-address", "kind: IPAddressPool\nspec: {addresses: [192.168.1.300/24]}", "each address must be a CIDR or a start-end range"},
		{"pool-range", "kind: IPAddressPool\nspec: {addresses: [192.168.1.1-x]}", "each address must be a CIDR or a start-end range"},
		{"pool-no-addresses", "kind: IPAddressPool\nspec: {autoAssign: false}", "spec.addresses"},
		{"community", "kind: Community\nspec: {communities: [{name: a, value: '65536:1'}]}", "value must be"},
		{"aggregation", "kind: BGPAdvertisement\nspec: {aggregationLength: 33}", "spec.aggregationLength"},
		{"selector", "kind: L2Advertisement\nspec: {nodeSelectors: [{matchExpressions: [{key: a, operator: In}]}]}", "values: must be non-empty for In"},
		{"peer-asn", "kind: BGPPeer\nspec: {myASN: 64500, peerAddress: 10.0.0.1}", "peerASN or dynamicASN is required"},
		{"peer-address", "kind: BGPPeer\nspec: {myASN: 64500, peerASN: 64501, peerAddress: nope}", "peerAddress must be an IP address"},
		{"holdtime", "kind: BGPPeer\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1, holdTime: 1s}", "holdTime must be 0 or 3s-65535s"},
		{"ok-pool", "kind: IPAddressPool\nspec: {addresses: [192.168.10.0/24, '192.168.9.1 - 192.168.9.5', 'fc00:f853:ccd:e799::/124'], serviceAllocation: {priority: 50, namespaces: [a]}}", ""},
		{"ok-pool-selectors", "kind: IPAddressPool\nspec: {addresses: [192.168.11.0/24], serviceAllocation: {namespaceSelectors: [{matchLabels: {team: a}}], serviceSelectors: [{matchExpressions: [{key: tier, operator: In, values: [gold]}]}]}}", ""},
		{"ok-peer-frr-fields", "kind: BGPPeer\nspec: {myASN: 64500, dynamicASN: external, peerAddress: 10.0.0.1, vrf: red}", ""},
		{"ok-advert-alias", "kind: BGPAdvertisement\nspec: {communities: [no-advertise], ipAddressPools: [first-pool]}", ""},
		{"ok-bfd-echo", "kind: BFDProfile\nspec: {echoMode: true, minimumTtl: 10}", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			version := "v1beta1"
			if strings.Contains(tt.doc, "kind: BGPPeer") {
				version = "v1beta2"
			}
			obj := object(t, "apiVersion: metallb.io/"+version+"\nmetadata: {name: cel-"+tt.name+"}\n"+tt.doc+"\n")
			gvr := metallbGVR(obj.GetKind())
			_, err := dyn.Resource(gvr).Namespace(ns).Create(t.Context(), obj, metav1.CreateOptions{})
			if err == nil {
				t.Cleanup(func() {
					_ = dyn.Resource(gvr).Namespace(ns).Delete(context.Background(), obj.GetName(), metav1.DeleteOptions{})
				})
			}
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// MetalLB's BGP objects as they are: a v1beta2 BGPPeer selecting one node,
// a BGPAdvertisement with a local preference and a Community alias. Only
// that node peers with the lab's router; the pool's Service is routed via
// it with the attributes (iBGP, so local preference is sent).
func TestMetalLBBGPObjects(t *testing.T) {
	dyn := metallbCRDs(t, t.Context())
	c := newCluster(t, 2)
	r, err := c.n.StartRouter(c.ctx, lab.RouterOptions{NodeASN: 65001})
	if err != nil {
		t.Fatal(err)
	}
	c.metallbObjects(dyn,
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: routed}\nspec: {addresses: [198.18.5.0/28]}",
		"apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: communities}\nspec: {communities: [{name: tagged, value: '65000:100'}]}",
		"apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {myASN: 65001, peerASN: 65001, peerAddress: 198.18.0.254, holdTime: 9s, nodeSelectors: [{matchLabels: {kubernetes.io/hostname: node1}}]}",
		"apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: adv}\nspec: {ipAddressPools: [routed], localPref: 150, communities: [tagged]}",
	)
	c.startWithAllocator("vigil_metallb_namespace="+c.ns, "bgp_enable=true", "bgp_as=65001", "svc_election=false")
	c.setEndpoints("web", c.allNodes()...)
	c.createService("web", nil)
	vip := c.allocated("web", 15*time.Second)[0]
	if !inRange(vip, "198.18.5.0", "198.18.5.15") {
		t.Fatalf("web got %s, want one of the pool's", vip)
	}
	c.waitHops(r, vip, 20*time.Second, "node1")
	out, err := r.Birdc(c.ctx, "show", "route", "all")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"BGP.local_pref: 150", "(65000,100)"} {
		if !strings.Contains(out, want) {
			t.Errorf("router's route lacks %q:\n%s", want, out)
		}
	}
	if out, _ := r.Birdc(c.ctx, "show", "protocols"); strings.Count(out, "Established") != 1 {
		t.Errorf("want one session (node1's):\n%s", out)
	}
}

// MetalLB's serviceAllocation selectors: team-pool serves namespaces
// labelled e2e-team=<the test's namespace>, gold-pool (priority 1)
// Services labelled tier=gold, default-pool (no serviceAllocation)
// everyone. The test's namespace is labelled, a second one is not. Each
// Service lands in the pool its labels and its namespace's pick: a pool
// with a serviceAllocation comes before one without, whatever the names;
// a Service naming gold-pool without the label gets no address and a
// Warning.
func TestMetalLBServiceAllocation(t *testing.T) {
	dyn := metallbCRDs(t, t.Context())
	c := newCluster(t, 2)
	ns, err := c.cs.CoreV1().Namespaces().Get(c.ctx, c.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels["e2e-team"] = c.ns
	if _, err := c.cs.CoreV1().Namespaces().Update(c.ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	other := c.otherNamespace()
	c.metallbObjects(dyn,
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: default-pool}\nspec: {addresses: [198.18.0.182/31]}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: team-pool}\nspec: {addresses: [198.18.0.184/30], serviceAllocation: {namespaceSelectors: [{matchLabels: {e2e-team: "+c.ns+"}}]}}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: gold-pool}\nspec: {addresses: [198.18.0.196/30], serviceAllocation: {priority: 1, serviceSelectors: [{matchExpressions: [{key: tier, operator: In, values: [gold]}]}]}}",
	)
	c.startWithAllocator("vigil_metallb_namespace=" + c.ns)
	gold := func(s *corev1.Service) { s.Labels = map[string]string{"tier": "gold"} }
	c.createService("team", nil)
	c.createService("gold", nil, gold)
	c.createService("named", nil, withAnnotation("metallb.universe.tf/address-pool", "gold-pool"))
	c.createServiceIn(other, "plain")
	c.createServiceIn(other, "gold", gold)
	for _, tt := range []struct {
		ns, name    string
		first, last string
	}{
		{c.ns, "team", "198.18.0.184", "198.18.0.187"},
		{c.ns, "gold", "198.18.0.196", "198.18.0.199"},
		{other, "plain", "198.18.0.182", "198.18.0.183"},
		{other, "gold", "198.18.0.196", "198.18.0.199"},
	} {
		if got := c.allocatedIn(tt.ns, tt.name, 15*time.Second); !inRange(got, tt.first, tt.last) {
			t.Errorf("%s/%s got %s, want one of %s-%s", tt.ns, tt.name, got, tt.first, tt.last)
		}
	}
	if ev := c.waitEvent("named", "AllocationFailed", 10*time.Second); !strings.Contains(ev.Message, `pool "gold-pool" does not serve`) {
		t.Errorf("named's Warning: %s", ev.Message)
	}
	if got := c.service("named").Annotations["kube-vip.io/loadbalancerIPs"]; got != "" {
		t.Errorf("named got %s from a pool whose serviceSelectors it does not match", got)
	}
}

// otherNamespace creates a second namespace for the test, deleted when
// it ends.
func (c *cluster) otherNamespace() string {
	c.t.Helper()
	ns, err := c.cs.CoreV1().Namespaces().Create(c.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-other-"}}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		_ = c.cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// createServiceIn creates a LoadBalancer Service in another namespace.
func (c *cluster) createServiceIn(ns, name string, opts ...svcOpt) {
	c.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name}},
	}
	withPorts(8080)(svc)
	for _, o := range opts {
		o(svc)
	}
	if _, err := c.cs.CoreV1().Services(ns).Create(c.ctx, svc, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// allocatedIn waits for the allocator's address of a Service in any
// namespace (one family).
func (c *cluster) allocatedIn(ns, name string, within time.Duration) netip.Addr {
	c.t.Helper()
	var got string
	if err := lab.WaitFor(c.ctx, within, func() bool {
		s, err := c.cs.CoreV1().Services(ns).Get(c.ctx, name, metav1.GetOptions{})
		if err == nil {
			got = s.Annotations["kube-vip.io/loadbalancerIPs"]
		}
		return got != ""
	}); err != nil {
		c.t.Fatalf("%s/%s: no address within %v", ns, name, within)
	}
	return netip.MustParseAddr(got)
}

//go:build e2e

package e2e

import (
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// watchBound fails the test if ip is ever bound on more than one live node.
func (c *cluster) watchBound(ip string) {
	addr := mustAddr(ip)
	c.watchAtMostOne(ip+" bound", func() []string {
		// A crashed node (cable pulled) keeps its addresses but is off the
		// LAN: it does not count.
		return slices.DeleteFunc(c.nodesWith(addr), c.isCrashed)
	})
}

// Two Services on one address with different ports: one node announces it;
// deleting one leaves the VIP where it is; a third whose port collides gets
// a Warning Event and a condition, and is not announced until the clash is
// gone.
func TestSharedAddress(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll()
	const ip = "198.18.0.101"
	vip := mustAddr(ip)
	c.watchBound(ip)
	capture, err := c.n.StartCapture(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		c.setEndpoints(name, c.allNodes()...)
	}
	// Created back to back, so nodes race for both leases.
	c.createService("a", []string{ip}, withPorts(80))
	c.createService("b", []string{ip}, withPorts(81))
	holder, _ := c.waitOwner(vip, "", "", 5*time.Second)
	for _, name := range []string{"a", "b"} {
		c.waitService(name, 5*time.Second, "vipHost = "+holder, func(s *corev1.Service) bool {
			return s.Annotations["kube-vip.io/vipHost"] == holder && len(s.Status.LoadBalancer.Ingress) == 1
		})
	}
	firstAnnouncement(t, capture, vip) // the capture has caught up
	if got := capture.Announcers(vip); len(got) != 1 {
		t.Errorf("announcers of shared %s = %v, want exactly one node", ip, got)
	}

	c.createService("c", []string{ip}, withPorts(80))
	c.waitEvent("c", "PortCollision", 5*time.Second)
	s := c.waitService("c", 5*time.Second, "PortCollision condition", func(s *corev1.Service) bool {
		cond := condition(s, "vigil.io/Announced")
		return cond != nil && cond.Reason == "PortCollision"
	})
	if len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("colliding service c has ingress %v", ingressIPs(s))
	}

	// Deleting a: the VIP stays on the holder, and c (no clash any more)
	// joins it there.
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitService("c", 5*time.Second, "c announced by "+holder, func(s *corev1.Service) bool {
		return s.Annotations["kube-vip.io/vipHost"] == holder && len(s.Status.LoadBalancer.Ingress) == 1
	})
	if got := c.owner(vip); got != holder {
		t.Errorf("after deleting a, %s answered by %q, want %s", ip, got, holder)
	}
	if got := c.service("b").Annotations["kube-vip.io/vipHost"]; got != holder {
		t.Errorf("b's vipHost = %q, want %s", got, holder)
	}
	if got := capture.Announcers(vip); len(got) != 1 {
		t.Errorf("announcers of shared %s = %v, want exactly one node", ip, got)
	}

	// The holder crashes: one other node takes the address and both
	// Services with it once the leases expire.
	c.crash(holder)
	next, took := c.waitOwner(vip, "", holder, 10*time.Second)
	t.Logf("shared address failed over %s -> %s in %v", holder, next, took)
	for _, name := range []string{"b", "c"} {
		c.waitService(name, 5*time.Second, "vipHost = "+next, func(s *corev1.Service) bool {
			return s.Annotations["kube-vip.io/vipHost"] == next
		})
	}
}

// kube-vip.io/ignore withdraws a held VIP; class rules pick what is ours.
func TestIgnoreAndClass(t *testing.T) {
	c := newCluster(t, 2)
	c.startAll()
	for _, n := range []string{"plain", "other", "ours"} {
		c.setEndpoints(n, c.allNodes()...)
	}
	plain, other, ours := mustAddr("198.18.0.102"), mustAddr("198.18.0.103"), mustAddr("198.18.0.104")
	c.createService("plain", []string{plain.String()})
	otherClass, ourClass := "example.com/other", "kube-vip.io/kube-vip-class"
	c.createService("other", []string{other.String()}, func(s *corev1.Service) { s.Spec.LoadBalancerClass = &otherClass })
	c.createService("ours", []string{ours.String()}, func(s *corev1.Service) { s.Spec.LoadBalancerClass = &ourClass })
	c.waitOwner(plain, "", "", 5*time.Second)
	c.waitOwner(ours, "", "", 5*time.Second)

	// Ignore: withdrawn, and what vigil wrote is taken back.
	c.kubectl("annotate", "svc", "plain", "kube-vip.io/ignore=true")
	c.waitNoOwner(plain, 5*time.Second)
	c.waitService("plain", 5*time.Second, "status cleared", func(s *corev1.Service) bool {
		return len(s.Status.LoadBalancer.Ingress) == 0 && s.Annotations["kube-vip.io/vipHost"] == ""
	})
	c.kubectl("annotate", "svc", "plain", "kube-vip.io/ignore-")
	c.waitOwner(plain, "", "", 5*time.Second)

	// Another class is never touched.
	if got := c.owner(other); got != "" {
		t.Errorf("service of class %s announced by %s", otherClass, got)
	}
	if s := c.service("other"); len(s.Status.LoadBalancer.Ingress) != 0 || len(s.Status.Conditions) != 0 {
		t.Errorf("service of another class got status %+v", s.Status)
	}

	// Strict class handling: restart the agents with it; the class-less
	// Service is withdrawn, ours stays.
	for name, p := range c.agents {
		if took, ok := p.Stop(5 * time.Second); !ok {
			t.Errorf("agent on %s did not stop within 5s of SIGTERM (%v)", name, took)
		}
	}
	c.startAll("lb_class_legacy_handling=false")
	c.waitOwner(ours, "", "", 10*time.Second)
	if got := c.owner(plain); got != "" {
		t.Errorf("class-less service announced by %s under strict class handling", got)
	}
}

// externalTrafficPolicy Local: only a node with a ready local endpoint
// announces; the VIP follows the endpoint; none left means withdrawn, with a
// condition saying why.
func TestLocalTrafficPolicy(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll()
	vip := mustAddr("198.18.0.105")
	c.watchBound(vip.String())
	c.setEndpoints("loc", "node2")
	c.createService("loc", []string{vip.String()}, withLocal())
	c.waitOwner(vip, "node2", "", 5*time.Second)

	c.setEndpoints("loc", "node3")
	_, took := c.waitOwner(vip, "node3", "node2", 5*time.Second)
	t.Logf("VIP followed the endpoint node2 -> node3 in %v", took)

	c.setEndpoints("loc")
	c.waitNoOwner(vip, 5*time.Second)
	c.waitService("loc", 5*time.Second, "NoEligibleNode", func(s *corev1.Service) bool {
		cond := condition(s, "vigil.io/Announced")
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == "NoEligibleNode" && len(s.Status.LoadBalancer.Ingress) == 0
	})
}

// Failover: a crashed holder (agent killed, cable pulled) is replaced after
// the lease expires; a SIGTERMed holder hands over at once.
func TestFailover(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll()
	c.serveAll(8080)
	vip := mustAddr("198.18.0.106")
	holder := c.announced("web", vip)
	capture, err := c.n.StartCapture(c.ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Crash.
	crash := time.Now()
	c.crash(holder)
	next := c.firstAnnouncerOtherThan(capture, vip, holder, crash, 15*time.Second)
	arp := next.Time.Sub(crash)
	if got, err := c.n.Dial(c.ctx, vip, 8080); err != nil || got != c.n.HostByMACString(next.SrcMAC) {
		t.Errorf("after crash failover TCP reached %q (%v), want %s", got, err, c.n.HostByMACString(next.SrcMAC))
	}
	t.Logf("crash failover %s -> %s: first GARP after %v", holder, c.n.HostByMACString(next.SrcMAC), arp)
	if arp > 5*time.Second+700*time.Millisecond {
		t.Errorf("crash failover took %v, want <= lease duration (5s) + 0.7s", arp)
	}

	// Graceful handover.
	second := c.n.HostByMACString(next.SrcMAC)
	term := time.Now()
	took, ok := c.agents[second].Stop(5 * time.Second)
	if !ok {
		t.Errorf("agent on %s did not exit within 5s of SIGTERM", second)
	}
	third := c.firstAnnouncerOtherThan(capture, vip, second, term, 5*time.Second)
	handover := third.Time.Sub(term)
	t.Logf("graceful handover %s -> %s: first GARP after %v (agent exited after %v)", second, c.n.HostByMACString(third.SrcMAC), handover, took)
	if handover > time.Second {
		t.Errorf("graceful handover took %v, want < 1s", handover)
	}
	if got := c.nodesWith(vip); slices.Contains(got, second) {
		t.Errorf("SIGTERMed %s left the VIP bound", second)
	}
}

// A holder cut off from the API (LAN up) withdraws its VIP before any other
// node announces it: at no moment do two MACs answer for it.
func TestPartitionedHolderWithdrawsFirst(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll()
	c.partitionedHolderWithdrawsFirst(mustAddr("198.18.0.107"))
}

// partitionedHolderWithdrawsFirst cuts vip's holder from the API (LAN up):
// the old holder's last announcement comes before the new holder's first,
// and back on the API it does not grab the VIP again.
func (c *cluster) partitionedHolderWithdrawsFirst(vip netip.Addr) {
	t := c.t
	c.watchBound(vip.String())
	holder := c.announced("web", vip)
	capture, err := c.n.StartCapture(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	if err := c.n.CutAPI(c.ctx, c.node(holder)); err != nil {
		t.Fatal(err)
	}
	next := c.firstAnnouncerOtherThan(capture, vip, holder, cut, 15*time.Second)
	t.Logf("partition: %s cut off; %s announced after %v", holder, c.n.HostByMACString(next.SrcMAC), next.Time.Sub(cut))
	oldMAC := c.node(holder).MAC.String()
	var lastOld time.Time
	for _, e := range capture.Events() {
		if e.Addr == vip && e.Announces() && e.SrcMAC == oldMAC && e.Time.After(lastOld) {
			lastOld = e.Time
		}
	}
	if !lastOld.IsZero() && !lastOld.Before(next.Time) {
		t.Errorf("old holder %s announced at %v, after the new holder started at %v", holder, lastOld, next.Time)
	}
	if got := c.nodesWith(vip); slices.Contains(got, holder) {
		t.Errorf("partitioned %s still has the VIP bound", holder)
	}
	// Back on the API, the old holder does not grab the VIP again.
	if err := c.n.RestoreAPI(c.ctx, c.node(holder)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if got := c.owner(vip); got != c.n.HostByMACString(next.SrcMAC) {
		t.Errorf("after the partition healed %s is answered by %q, want %s", vip, got, c.n.HostByMACString(next.SrcMAC))
	}
}

// A SIGKILLed agent leaves its VIP in the kernel; when the Service is
// deleted while it is down, the restarted agent removes the stale VIP.
func TestRestartRemovesStaleVIP(t *testing.T) {
	c := newCluster(t, 2)
	c.startAll()
	vip := mustAddr("198.18.0.108")
	holder := c.announced("web", vip)
	c.agents[holder].Kill()
	if got := c.nodesWith(vip); !slices.Contains(got, holder) {
		t.Fatalf("expected the killed agent to leave %s on %s, bound on %v", vip, holder, got)
	}
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.startAgent(holder)
	c.waitReady(holder)
	if got := c.nodesWith(vip); len(got) != 0 {
		t.Errorf("stale VIP still bound on %v after restart", got)
	}
	c.waitNoOwner(vip, 3*time.Second)
}

// IPv6 VIPs are announced with unsolicited NAs; a dual-stack Service gets
// both families on one node. The agents pick the interface by subnet
// (vip_servicesinterface=auto).
func TestIPv6AndDualStack(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll("vip_servicesinterface=auto")
	capture, err := c.n.StartCapture(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	v6 := mustAddr("fd00:1ab::100")
	c.setEndpoints("six", c.allNodes()...)
	c.createService("six", []string{v6.String()}, func(s *corev1.Service) {
		p := corev1.IPFamilyPolicyPreferDualStack
		s.Spec.IPFamilyPolicy = &p
	})
	holder, _ := c.waitOwner(v6, "", "", 5*time.Second)
	first := firstAnnouncement(t, capture, v6)
	if first.Op != "na" || first.SrcMAC != c.node(holder).MAC.String() {
		t.Errorf("first announcement of %s = %+v, want an NA from %s", v6, first, holder)
	}

	d4, d6 := mustAddr("198.18.0.109"), mustAddr("fd00:1ab::109")
	c.setEndpoints("dual", c.allNodes()...)
	c.createService("dual", []string{d4.String(), d6.String()}, func(s *corev1.Service) {
		p := corev1.IPFamilyPolicyRequireDualStack
		s.Spec.IPFamilyPolicy = &p
	})
	h4, _ := c.waitOwner(d4, "", "", 5*time.Second)
	h6, _ := c.waitOwner(d6, "", "", 5*time.Second)
	if h4 != h6 {
		t.Errorf("dual-stack service split: IPv4 on %s, IPv6 on %s", h4, h6)
	}
	s := c.waitService("dual", 5*time.Second, "two ingress entries", func(s *corev1.Service) bool { return len(s.Status.LoadBalancer.Ingress) == 2 })
	if got := ingressIPs(s); !slices.Equal(got, []string{d4.String(), d6.String()}) {
		t.Errorf("dual-stack ingress = %v", got)
	}
}

// A Service with a malformed address gets a Warning Event and a condition;
// nothing crashes, and fixing it announces the VIP.
func TestInvalidAddress(t *testing.T) {
	c := newCluster(t, 2)
	c.startAll()
	c.setEndpoints("bad", c.allNodes()...)
	c.createService("bad", nil, withAnnotation("kube-vip.io/loadbalancerIPs", "198.18.0.300"))
	c.waitEvent("bad", "InvalidAddress", 5*time.Second)
	c.waitService("bad", 5*time.Second, "InvalidAddress condition", func(s *corev1.Service) bool {
		cond := condition(s, "vigil.io/Announced")
		return cond != nil && cond.Reason == "InvalidAddress"
	})
	patch := []byte(`{"metadata":{"annotations":{"kube-vip.io/loadbalancerIPs":"198.18.0.110"}}}`)
	if _, err := c.cs.CoreV1().Services(c.ns).Patch(c.ctx, "bad", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitOwner(mustAddr("198.18.0.110"), "", "", 5*time.Second)
	for name, p := range c.agents {
		if p.Exited() {
			t.Errorf("agent on %s exited: %v", name, p.Err())
		}
	}
}

// svc_election=false: one Lease (svc_leasename) decides for every Service;
// its holder announces them all. Metrics and `vigil status` tell the truth.
func TestSharedLeaseMode(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll("svc_election=false", "svc_leasename=plndr-svcs-lock")
	a, b := mustAddr("198.18.0.111"), mustAddr("198.18.0.112")
	c.setEndpoints("a", c.allNodes()...)
	c.setEndpoints("b", c.allNodes()...)
	c.createService("a", []string{a.String()})
	c.createService("b", []string{b.String()})
	ha, _ := c.waitOwner(a, "", "", 5*time.Second)
	hb, _ := c.waitOwner(b, "", "", 5*time.Second)
	if ha != hb {
		t.Errorf("one shared lease, but a is on %s and b on %s", ha, hb)
	}
	l, err := c.cs.CoordinationV1().Leases(c.ns).Get(c.ctx, "plndr-svcs-lock", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != ha {
		t.Errorf("lease holder = %v, want %s", l.Spec.HolderIdentity, ha)
	}

	// The holder's metrics count two VIPs.
	code, body, err := c.n.HTTPGet(c.ctx, c.node(ha), "http://127.0.0.1:2112/metrics")
	if err != nil || code != 200 {
		t.Fatalf("metrics: %d %v", code, err)
	}
	if !strings.Contains(body, "vigil_vips_announced 2") {
		t.Errorf("holder metrics lack vigil_vips_announced 2:\n%s", grepLines(body, "vigil_"))
	}
	if !strings.Contains(body, `vigil_announcements_sent_total{family="ipv4",result="ok"}`) {
		t.Errorf("holder metrics lack sent announcements:\n%s", grepLines(body, "vigil_"))
	}

	// vigil status shows both, held by the lease holder.
	c.waitService("b", 5*time.Second, "vipHost", func(s *corev1.Service) bool { return s.Annotations["kube-vip.io/vipHost"] == ha })
	out, err := exec.CommandContext(c.ctx, vigilBin(t), "status", "--kubeconfig", cp.AdminKubeconfig, "-n", c.ns).CombinedOutput()
	if err != nil {
		t.Fatalf("vigil status: %v\n%s", err, out)
	}
	t.Logf("vigil status:\n%s", out)
	for _, want := range []string{"a  ", "b  ", a.String(), b.String(), ha, "Announced"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("vigil status output lacks %q", want)
		}
	}

	// externalTrafficPolicy Local needs a node with a local endpoint, so
	// such a Service gets its own Lease even in shared-lease mode.
	var other string
	for _, n := range c.allNodes() {
		if n != ha {
			other = n
			break
		}
	}
	loc := mustAddr("198.18.0.113")
	c.setEndpoints("loc", other)
	c.createService("loc", []string{loc.String()}, withLocal())
	c.waitOwner(loc, other, "", 5*time.Second)

	// The holder's graceful stop moves both.
	c.agents[ha].Stop(5 * time.Second)
	na, _ := c.waitOwner(a, "", ha, 5*time.Second)
	nb, _ := c.waitOwner(b, "", ha, 5*time.Second)
	if na != nb {
		t.Errorf("after handover a is on %s and b on %s", na, nb)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/testing/lab"
)

// Bug 7 (issue 8): a holder whose agent hangs (SIGSTOP) or dies alone
// (SIGKILL, node and LAN up) must not keep answering for its VIP while
// another node takes over. The VIP is bound with a kernel lifetime that
// lapses before anyone may take over, so at no sample do two nodes hold it,
// and no announcement from the old holder follows the new holder's first.
// After SIGCONT the resumed agent does not announce the VIP again.
func TestStalledOrKilledHolderLapses(t *testing.T) {
	for _, tt := range []struct {
		name string
		ip   string
		stop func(c *cluster, holder string)
	}{
		{"SIGSTOP", "198.18.0.140", func(c *cluster, h string) {
			if err := c.agents[h].Signal(syscall.SIGSTOP); err != nil {
				c.t.Fatal(err)
			}
			c.t.Cleanup(func() { _ = c.agents[h].Signal(syscall.SIGCONT) })
		}},
		{"SIGKILL alone", "198.18.0.141", func(c *cluster, h string) { c.agents[h].Kill() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 3)
			c.startAll()
			vip := mustAddr(tt.ip)
			c.watchBound(vip.String())
			holder := c.announced("web", vip)
			capture, err := c.n.StartCapture(c.ctx)
			if err != nil {
				t.Fatal(err)
			}
			stopped := time.Now()
			tt.stop(c, holder)
			next := c.firstAnnouncerOtherThan(capture, vip, holder, stopped, 15*time.Second)
			t.Logf("%s on %s: %s announced after %v", tt.name, holder, c.n.HostByMACString(next.SrcMAC), next.Time.Sub(stopped))
			// Keep sampling a while with the old agent still stopped/dead.
			time.Sleep(5 * time.Second)
			if got := c.nodesWith(vip); slices.Contains(got, holder) {
				t.Errorf("%s still holds %s %v after the takeover", holder, vip, time.Since(stopped))
			}
			if tt.name == "SIGSTOP" {
				resumed := time.Now()
				if err := c.agents[holder].Signal(syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
				time.Sleep(3 * time.Second)
				for _, e := range capture.Events() {
					if e.Addr == vip && e.Announces() && e.SrcMAC == c.node(holder).MAC.String() && e.Time.After(resumed) {
						t.Errorf("resumed %s announced %s at +%v", holder, vip, e.Time.Sub(resumed))
					}
				}
				if got := c.owner(vip); got != c.n.HostByMACString(next.SrcMAC) {
					t.Errorf("after SIGCONT %s is answered by %q, want %s", vip, got, c.n.HostByMACString(next.SrcMAC))
				}
			}
			oldMAC := c.node(holder).MAC.String()
			for _, e := range capture.Events() {
				if e.Addr == vip && e.Announces() && e.SrcMAC == oldMAC && e.Time.After(next.Time) {
					t.Errorf("old holder %s answered for %s (%s) at %v, after the new holder started at %v", holder, vip, e.Op, e.Time, next.Time)
				}
			}
		})
	}
}

// Bug 2 (issue 8): svc_namespace with the shared Lease in another
// namespace (svc_election=false, vip_leasenamespace=kube-system), and with
// per-Service Leases: a Service is announced in both modes.
func TestServiceNamespace(t *testing.T) {
	for _, tt := range []struct {
		name string
		ip   string
		env  []string
	}{
		{"per-service", "198.18.0.142", []string{"svc_election=true"}},
		{"shared lease elsewhere", "198.18.0.143", []string{"svc_election=false", "vip_leasenamespace=kube-system", "svc_leasename=vigil-e2e-" + fmt.Sprint(time.Now().UnixNano()%100000)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 2)
			c.startAll(tt.env...)
			vip := mustAddr(tt.ip)
			c.announced("web", vip)
		})
	}
}

// Bug 8 (issue 8): a node labelled
// node.kubernetes.io/exclude-from-external-load-balancers (or whose
// network is unavailable) gives up its VIPs and never takes one.
func TestNodeExclusion(t *testing.T) {
	c := newCluster(t, 3)
	for _, n := range c.allNodes() {
		c.createNode(n)
	}
	c.startAll()
	vip := mustAddr("198.18.0.144")
	c.watchBound(vip.String())
	holder := c.announced("web", vip)
	c.kubectl("label", "node", holder, "node.kubernetes.io/exclude-from-external-load-balancers=true")
	second, took := c.waitOwner(vip, "", holder, 10*time.Second)
	t.Logf("labelled %s: VIP moved to %s after %v", holder, second, took)
	c.setNetworkUnavailable(second, true)
	third, took := c.waitOwner(vip, "", second, 10*time.Second)
	t.Logf("NetworkUnavailable on %s: VIP moved to %s after %v", second, third, took)
	if third == holder {
		t.Errorf("VIP went back to the excluded %s", holder)
	}
	// The last eligible node goes: nobody announces it.
	c.setNetworkUnavailable(third, true)
	c.waitNoOwner(vip, 10*time.Second)
	c.waitService("web", 5*time.Second, "not announced", func(s *corev1.Service) bool { return len(s.Status.LoadBalancer.Ingress) == 0 })
	c.kubectl("label", "node", holder, "node.kubernetes.io/exclude-from-external-load-balancers-")
	c.waitOwner(vip, holder, "", 10*time.Second)
}

func (c *cluster) createNode(name string) {
	c.t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	out, err := c.cs.CoreV1().Nodes().Create(c.ctx, n, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = c.cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	out.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := c.cs.CoreV1().Nodes().UpdateStatus(c.ctx, out, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) setNetworkUnavailable(name string, unavailable bool) {
	c.t.Helper()
	n, err := c.cs.CoreV1().Nodes().Get(c.ctx, name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	st := corev1.ConditionFalse
	if unavailable {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = append(slices.DeleteFunc(n.Status.Conditions, func(x corev1.NodeCondition) bool {
		return x.Type == corev1.NodeNetworkUnavailable
	}), corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: st})
	if _, err := c.cs.CoreV1().Nodes().UpdateStatus(c.ctx, n, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// Bug 9 (issue 8): six malformed Services on three nodes: each gets exactly
// one Warning for its problem, within 2 s, from one node.
func TestOneWarningPerProblem(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll()
	bad := map[string]string{
		"bad-octet":   "198.18.0.300",
		"bad-word":    "bogus",
		"loopback":    "127.0.0.1",
		"multicast":   "224.0.0.1",
		"dhcp-mixed":  "0.0.0.0,198.18.0.145",
		"dhcp6-mixed": "::,fd00:1ab::45",
	}
	start := time.Now()
	for name, ip := range bad {
		c.setEndpoints(name, c.allNodes()...)
		c.createService(name, nil, withAnnotation("kube-vip.io/loadbalancerIPs", ip))
	}
	for name := range bad {
		c.waitEvent(name, "InvalidAddress", 2*time.Second+time.Since(start))
	}
	t.Logf("all six Warnings within %v of the first create", time.Since(start))
	time.Sleep(3 * time.Second) // let any duplicate arrive
	for name := range bad {
		var warnings []string
		total := int32(0)
		for _, e := range c.events(name) {
			if e.Type == corev1.EventTypeWarning {
				warnings = append(warnings, fmt.Sprintf("%s x%d from %s", e.Reason, e.Count, e.Source.Host))
				total += max(e.Count, 1)
			}
		}
		if total != 1 {
			t.Errorf("%s: Warnings %v, want exactly one, once", name, warnings)
		}
	}
}

// Bug 4 (issue 8): what SIGTERM means for UPnP forwards. With another
// eligible node the forwards are handed over: they stay on the gateway
// (they point at the VIP, which the next holder takes and refreshes them
// from) and the WAN reaches the next holder. When no other node may hold the
// Service, they are deleted from the VIP before it is withdrawn (secure
// gateways refuse deletes from any other address).
func TestUPnPShutdown(t *testing.T) {
	for _, tt := range []struct {
		name     string
		ip       string
		nodes    int
		handover bool
	}{
		{"handover to the next holder", "198.18.0.146", 2, true},
		{"last node going away", "198.18.0.147", 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.nodes, "enableUPNP=true")
			for _, n := range c.allNodes() {
				c.createNode(n)
			}
			if _, err := c.n.StartUPnP(c.ctx, lab.UPnPOptions{Secure: true}); err != nil {
				t.Fatal(err)
			}
			c.startAll()
			c.serveAll(8080)
			vip := mustAddr(tt.ip)
			holder := c.announced("web", vip, withAnnotation("kube-vip.io/forwardUPNP", "true"))
			tcp := lab.Mapping{Proto: "TCP", ExternalPort: 8080, Internal: netip.AddrPortFrom(vip, 8080)}
			c.waitMapped(tcp, true, 10*time.Second)
			if _, ok := c.agents[holder].Stop(5 * time.Second); !ok {
				t.Fatalf("agent on %s did not exit within 5s of SIGTERM", holder)
			}
			if !tt.handover {
				if c.mapped(tcp) {
					t.Errorf("the last agent left its forward on the gateway")
				}
				return
			}
			if !c.mapped(tcp) {
				t.Errorf("forward deleted on SIGTERM although another node takes over")
			}
			next, _ := c.waitOwner(vip, "", holder, 5*time.Second)
			if err := lab.WaitFor(c.ctx, 10*time.Second, func() bool {
				got, err := c.n.DialFromWAN(c.ctx, wanIP, 8080)
				return err == nil && got == next
			}); err != nil {
				t.Errorf("WAN does not reach the next holder %s through the handed-over forward", next)
			}
		})
	}
}

//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/testing/lab"
)

// The kube-vip docs' flow: kubectl expose --load-balancer-ip. Within a second
// the client's ARP for the VIP is answered by the holder, a TCP connection
// reaches the holder, and the Service status tells the truth.
func TestExposeLoadBalancerIP(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll()
	c.serveAll(8080)
	vip := mustAddr("198.18.0.100")

	capture, err := c.n.StartCapture(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.kubectl("create", "deployment", "web", "--image=registry.invalid/web:1")
	c.setEndpoints("web", c.allNodes()...)
	start := time.Now()
	c.kubectl("expose", "deployment", "web", "--type=LoadBalancer", "--load-balancer-ip="+vip.String(), "--port=8080")
	holder, _ := c.waitOwner(vip, "", "", 5*time.Second)
	first := firstAnnouncement(t, capture, vip)
	t.Logf("kubectl expose started -> first GARP from %s after %v; client ARP answered by %s", first.SrcMAC, first.Time.Sub(start), holder)
	if took := first.Time.Sub(start); took > time.Second {
		t.Errorf("first GARP %v after expose, want within 1s", took)
	}
	if got, err := c.n.Dial(c.ctx, vip, 8080); err != nil || got != holder {
		t.Errorf("TCP to %s:8080 reached %q (%v), want holder %s", vip, got, err, holder)
	}
	if got := c.nodesWith(vip); len(got) != 1 || got[0] != holder {
		t.Errorf("VIP bound on %v, want only %s", got, holder)
	}
	s := c.waitService("web", 5*time.Second, "ingress + vipHost", func(s *corev1.Service) bool {
		return len(s.Status.LoadBalancer.Ingress) == 1 && s.Annotations["kube-vip.io/vipHost"] == holder
	})
	ing := s.Status.LoadBalancer.Ingress[0]
	if ing.IP != vip.String() || ing.IPMode == nil || *ing.IPMode != corev1.LoadBalancerIPModeVIP || len(ing.Ports) != 1 || ing.Ports[0].Port != 8080 {
		t.Errorf("ingress = %+v, want %s ipMode VIP port 8080", ing, vip)
	}
	if cond := condition(s, "vigil.io/Announced"); cond == nil || cond.Status != metav1.ConditionTrue {
		t.Errorf("condition vigil.io/Announced = %+v, want True", cond)
	}
	out := c.kubectl("get", "svc", "web")
	t.Logf("kubectl get svc:\n%s", out)
	c.waitEvent("web", "VIPAcquired", 5*time.Second)

	// Deleting the Service withdraws the VIP everywhere.
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitNoOwner(vip, 5*time.Second)
	if got := c.nodesWith(vip); len(got) != 0 {
		t.Errorf("VIP still bound on %v after delete", got)
	}
}

// firstAnnouncement returns the first GARP/NA for ip in the capture.
func firstAnnouncement(t *testing.T, c *lab.Capture, ip netip.Addr) lab.Announcement {
	t.Helper()
	var first lab.Announcement
	found := func() bool {
		for _, e := range c.Events() {
			if e.Addr == ip && e.Announces() {
				first = e
				return true
			}
		}
		return false
	}
	// tcpdump's output reaches us a little after the packet.
	if err := lab.WaitFor(context.Background(), 3*time.Second, found); err != nil {
		t.Fatalf("no announcement of %s captured: %+v", ip, c.Events())
	}
	return first
}

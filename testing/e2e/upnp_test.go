//go:build e2e

package e2e

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vigil-lb/vigil/testing/lab"
)

var wanIP = netip.MustParseAddr("198.19.0.1")

func (c *cluster) mapped(want lab.Mapping) bool {
	ms, err := c.n.Mappings(c.ctx)
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.Proto == want.Proto && m.ExternalPort == want.ExternalPort && m.Internal == want.Internal {
			return true
		}
	}
	return false
}

func (c *cluster) waitMapped(want lab.Mapping, present bool, within time.Duration) {
	c.t.Helper()
	if err := lab.WaitFor(c.ctx, within, func() bool { return c.mapped(want) == present }); err != nil {
		ms, _ := c.n.Mappings(c.ctx)
		c.t.Fatalf("mapping %+v present=%v not reached in %v; gateway has %+v", want, !present, within, ms)
	}
}

// enableUPNP + kube-vip.io/forwardUPNP (added after the Service exists):
// the holder maps every port on miniupnpd (secure mode) from the VIP; the WAN
// reaches the Service through the gateway; the external IP shows in the
// status; after a crash the new holder maps again; removing the annotation
// or deleting the Service removes the mappings.
func TestUPnPForwards(t *testing.T) {
	c := newCluster(t, 3, "enableUPNP=true")
	if _, err := c.n.StartUPnP(c.ctx, lab.UPnPOptions{Secure: true}); err != nil {
		t.Fatal(err)
	}
	c.startAll()
	c.serveAll(8080)
	vip := mustAddr("198.18.0.130")
	holder := c.announced("web", vip, func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
			{Name: "dns", Port: 5353, TargetPort: intstr.FromInt32(5353), Protocol: corev1.ProtocolUDP},
		}
	})
	tcp := lab.Mapping{Proto: "TCP", ExternalPort: 8080, Internal: netip.AddrPortFrom(vip, 8080)}
	udp := lab.Mapping{Proto: "UDP", ExternalPort: 5353, Internal: netip.AddrPortFrom(vip, 5353)}
	if c.mapped(tcp) {
		t.Fatalf("mapped before the Service asked for it")
	}

	start := time.Now()
	c.kubectl("annotate", "svc", "web", "kube-vip.io/forwardUPNP=true")
	c.waitMapped(tcp, true, 10*time.Second)
	t.Logf("annotation -> TCP mapping on the gateway after %v", time.Since(start))
	c.waitMapped(udp, true, 5*time.Second)
	if got, err := c.n.DialFromWAN(c.ctx, wanIP, 8080); err != nil || got != holder {
		t.Errorf("WAN -> %s:8080 reached %q (%v), want holder %s", wanIP, got, err, holder)
	}
	c.waitService("web", 5*time.Second, "external IP in ingress", func(s *corev1.Service) bool {
		return slices.Contains(ingressIPs(s), wanIP.String()) && slices.Contains(ingressIPs(s), vip.String())
	})
	c.waitEvent("web", "UPnPMapped", 5*time.Second)

	// Crash: the new holder maps from the same VIP and the WAN reaches it
	// (whoever holds the VIP by then: the test does not forbid a second
	// failover on a loaded machine).
	c.crash(holder)
	c.waitOwner(vip, "", holder, 15*time.Second)
	var next string
	if err := lab.WaitFor(c.ctx, 15*time.Second, func() bool {
		got, err := c.n.DialFromWAN(c.ctx, wanIP, 8080)
		next = got
		return err == nil && got != holder && got == c.owner(vip)
	}); err != nil {
		t.Errorf("WAN does not reach the new holder through the gateway (last answer %q)", next)
	}
	c.waitMapped(tcp, true, 15*time.Second)

	// The annotation goes: mappings go, the Service stays on the LAN.
	c.kubectl("annotate", "svc", "web", "kube-vip.io/forwardUPNP-")
	c.waitMapped(tcp, false, 10*time.Second)
	c.waitMapped(udp, false, 5*time.Second)
	if got, err := c.n.Dial(c.ctx, vip, 8080); err != nil || got != next {
		t.Errorf("LAN -> %s:8080 = %q (%v), want %s", vip, got, err, next)
	}
	c.waitService("web", 5*time.Second, "external IP gone from ingress", func(s *corev1.Service) bool {
		return !slices.Contains(ingressIPs(s), wanIP.String())
	})

	// Back on, then the Service is deleted: mappings go.
	c.kubectl("annotate", "svc", "web", "kube-vip.io/forwardUPNP=true")
	c.waitMapped(tcp, true, 10*time.Second)
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitMapped(tcp, false, 10*time.Second)
	c.waitMapped(udp, false, 5*time.Second)
	c.waitNoOwner(vip, 5*time.Second)
}

// No gateway on the LAN: a Warning Event, and the Service works on the LAN.
func TestUPnPNoGateway(t *testing.T) {
	c := newCluster(t, 2, "enableUPNP=true")
	c.startAll()
	c.serveAll(8080)
	vip := mustAddr("198.18.0.131")
	holder := c.announced("web", vip, withAnnotation("kube-vip.io/forwardUPNP", "true"))
	c.waitEvent("web", "UPnPFailed", 15*time.Second)
	if got, err := c.n.Dial(c.ctx, vip, 8080); err != nil || got != holder {
		t.Errorf("LAN -> %s:8080 = %q (%v), want %s", vip, got, err, holder)
	}
}

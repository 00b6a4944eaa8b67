//go:build e2e

package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/testing/lab"
)

// inDHCPRange tells whether ip is in dnsmasq's range of its family.
func inDHCPRange(ip netip.Addr) bool {
	first, last := lab.DHCPFirst, lab.DHCPLast
	if ip.Is6() {
		first, last = lab.DHCP6First, lab.DHCP6Last
	}
	return !ip.Less(first) && !last.Less(ip)
}

// dhcpAddrs waits until the Service's ingress shows want addresses, each
// from dnsmasq's range of its family, and returns them with the MAC
// recorded in kube-vip.io/hwaddr.
func (c *cluster) dhcpAddrs(name string, want int, within time.Duration) ([]netip.Addr, string) {
	c.t.Helper()
	s := c.waitService(name, within, "ingress IPs from DHCP", func(s *corev1.Service) bool {
		return len(s.Status.LoadBalancer.Ingress) == want && s.Annotations["kube-vip.io/hwaddr"] != ""
	})
	var out []netip.Addr
	for _, in := range s.Status.LoadBalancer.Ingress {
		ip := netip.MustParseAddr(in.IP)
		if !inDHCPRange(ip) {
			c.t.Fatalf("%s got %s, outside dnsmasq's ranges", name, ip)
		}
		out = append(out, ip)
	}
	return out, s.Annotations["kube-vip.io/hwaddr"]
}

func (c *cluster) leaseOf(ip netip.Addr) (lab.Lease, bool) {
	return c.leaseWhere(func(l lab.Lease) bool { return l.IP == ip })
}

// liveNodesWith is nodesWith without crashed nodes (whose kernel keeps
// an address until its lifetime ends, unreachable).
func (c *cluster) liveNodesWith(ip netip.Addr) []string {
	return slices.DeleteFunc(c.nodesWith(ip), c.isCrashed)
}

// every runs f every d until the returned stop is called.
func (c *cluster) every(d time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(d)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				f()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// --load-balancer-ip=:: gets an IPv6 address from dnsmasq's DHCPv6 server
// (IA_NA) on the elected node's macvlan; a client resolves it by NDP to the
// Service's MAC and reaches the holder; the lease is renewed at T1 without
// the address going away; a crashed holder's successor gets the same
// address (same DUID-LL); deleting the Service releases the lease. With
// dhcp_mode=dual, a Service asking for 0.0.0.0 gets one address of each
// family.
func TestDHCPv6Address(t *testing.T) {
	c := newCluster(t, 2)
	dnsmasq, err := c.n.StartDHCP(c.ctx, lab.DHCPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.startAll("dhcp_mode=dual")
	c.serveAll(8080)
	c.setEndpoints("web6", c.allNodes()...)
	start := time.Now()
	c.createService("web6", []string{"::"})
	got, mac := c.dhcpAddrs("web6", 1, 10*time.Second)
	ip := got[0]
	t.Logf(":: -> EXTERNAL-IP %s (MAC %s) after %v", ip, mac, time.Since(start).Round(time.Millisecond))
	if !ip.Is6() {
		t.Fatalf(":: leased %s, want an IPv6 address", ip)
	}
	holder := c.service("web6").Annotations["kube-vip.io/vipHost"]
	c.watchAtMostOne(ip.String(), func() []string { return c.liveNodesWith(ip) })
	if m, err := c.n.ResolveMAC(c.ctx, ip); err != nil || !strings.EqualFold(m.String(), mac) {
		t.Errorf("NDP for %s answered by %v (%v), want the Service's macvlan %s", ip, m, err, mac)
	}
	if got, err := c.n.Dial(c.ctx, ip, 8080); err != nil || got != holder {
		t.Errorf("TCP to [%s]:8080 reached %q (%v), want holder %s", ip, got, err, holder)
	}
	if got := c.service("web6").Annotations["kube-vip.io/requestedIP"]; got != ip.String() {
		t.Errorf("kube-vip.io/requestedIP = %q, want %s", got, ip)
	}
	first, ok := c.leaseOf(ip)
	if !ok || first.Hostname != "web6" {
		t.Errorf("dnsmasq lease for %s = %+v (found %t), want hostname web6", ip, first, ok)
	}
	c.waitEvent("web6", "DHCPAcquired", 5*time.Second)

	// dhcp_mode=dual: 0.0.0.0 leases both families.
	c.setEndpoints("both", c.allNodes()...)
	c.createService("both", []string{"0.0.0.0"})
	both, _ := c.dhcpAddrs("both", 2, 10*time.Second)
	if both[0].Is6() == both[1].Is6() {
		t.Errorf("dual 0.0.0.0 leased %v, want one IPv4 and one IPv6 address", both)
	}
	bothHolder := c.service("both").Annotations["kube-vip.io/vipHost"]
	for _, a := range both {
		if got, err := c.n.Dial(c.ctx, a, 8080); err != nil || got != bothHolder {
			t.Errorf("TCP to %s reached %q (%v), want holder %s", a, got, err, bothHolder)
		}
	}

	// Renewal at T1 (dnsmasq's 2-minute minimum: T1 = 60 s), the address
	// on the holder throughout.
	var missing atomic.Int32
	stop := c.every(250*time.Millisecond, func() {
		if !slices.Contains(c.nodesWith(ip), holder) {
			missing.Add(1)
		}
	})
	err = lab.WaitFor(c.ctx, 75*time.Second, func() bool {
		l, ok := c.leaseOf(ip)
		return ok && l.Expiry.After(first.Expiry)
	})
	stop()
	if err != nil {
		t.Fatalf("lease for %s not renewed within 75s (first expiry %v)\n%s", ip, first.Expiry, dnsmasq.Log())
	}
	if n := missing.Load(); n > 0 {
		t.Errorf("%s was missing from %s in %d samples during the renewal", ip, holder, n)
	}

	// Failover: the successor asks with the same DUID and gets the same
	// address.
	c.crash(holder)
	if err := lab.WaitFor(c.ctx, 15*time.Second, func() bool {
		s := c.service("web6")
		return s.Annotations["kube-vip.io/vipHost"] != holder && len(s.Status.LoadBalancer.Ingress) == 1
	}); err != nil {
		t.Fatalf("no new DHCPv6 holder after crashing %s", holder)
	}
	next := c.service("web6").Annotations["kube-vip.io/vipHost"]
	if again, _ := c.dhcpAddrs("web6", 1, 5*time.Second); again[0] != ip {
		t.Errorf("after failover the address is %s, want the same %s", again[0], ip)
	}
	if err := lab.WaitFor(c.ctx, 5*time.Second, func() bool { got, err := c.n.Dial(c.ctx, ip, 8080); return err == nil && got == next }); err != nil {
		t.Errorf("client cannot reach [%s]:8080 on the new holder %s", ip, next)
	}

	// Delete: the holder releases the lease and removes its macvlan.
	for _, name := range []string{"web6", "both"} {
		if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := lab.WaitFor(c.ctx, 5*time.Second, func() bool { _, ok := c.leaseOf(ip); return !ok }); err != nil {
		t.Errorf("dnsmasq still has a lease for %s after delete:\n%s", ip, dnsmasq.Log())
	}
	if err := lab.WaitFor(c.ctx, 5*time.Second, func() bool { return len(c.macvlanNodes()) == 0 }); err != nil {
		t.Errorf("macvlans left on %v after delete", c.macvlanNodes())
	}
}

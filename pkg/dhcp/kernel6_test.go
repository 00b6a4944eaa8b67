package dhcp_test

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/dhcp"
)

var (
	range6First = netip.MustParseAddr("fd00:1ab::200")
	range6Last  = netip.MustParseAddr("fd00:1ab::2ff")
)

// newLAN6 is newLAN with dnsmasq serving DHCPv6 addresses too.
func newLAN6(t *testing.T) *lan {
	t.Helper()
	l := newLAN(t, "--dhcp-range="+range6First.String()+","+range6Last.String()+",64,120s")
	if !waitFor(func() bool {
		out, _ := exec.Command("ip", "netns", "exec", l.A, "ss", "-Hulpn", "sport = :547").CombinedOutput()
		return strings.Contains(string(out), "dnsmasq")
	}) {
		t.Fatalf("dnsmasq does not listen on port 547:\n%s", l.log)
	}
	return l
}

// hasLease6 tells whether dnsmasq's lease file holds addr.
func (l *lan) hasLease6(addr netip.Addr) bool {
	for _, d := range l.leases() {
		if d.Addr == addr {
			return true
		}
	}
	return false
}

// A DHCPv6 client gets an address from dnsmasq (after the macvlan's
// link-local address has passed DAD), the same MAC on a new macvlan gets
// the same address (DUID-LL), and Release gives it back.
func TestKernel6AcquireSameDUIDRelease(t *testing.T) {
	t.Parallel()
	l := newLAN6(t)
	l.macvlan("mv0", macA)
	c := startClientWith(t, l.B, dhcp.Config{Interface: "mv0", Hostname: "svc-v6"}, dhcp.New6)
	got := c.acquireWithin(kernelWait)
	if got.Addr.Less(range6First) || range6Last.Less(got.Addr) {
		t.Fatalf("leased %s, outside dnsmasq's range", got.Addr)
	}
	if !got.Expiry.After(time.Now().Add(100*time.Second)) || !got.T1.Before(got.T2) || !got.T2.Before(got.Expiry) {
		t.Errorf("lease times T1 %v T2 %v expiry %v: want T1 < T2 < expiry ≈ 120 s", got.T1, got.T2, got.Expiry)
	}
	if !waitFor(func() bool { return l.hasLease6(got.Addr) }) {
		t.Fatalf("dnsmasq has no lease for %s", got.Addr)
	}

	c.stop() // no release: the lease stays with the DUID, as after a crash
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	netnstest.IP(t, l.B, "link", "del", "mv0")
	l.macvlan("mv9", macA)
	again := startClientWith(t, l.B, dhcp.Config{Interface: "mv9"}, dhcp.New6)
	if a := again.acquireWithin(kernelWait); a.Addr != got.Addr {
		t.Errorf("same MAC again got %s, want %s", a.Addr, got.Addr)
	}

	again.stop()
	if err := again.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if !waitFor(func() bool { return !l.hasLease6(got.Addr) }) {
		t.Errorf("dnsmasq still has %s after Release", got.Addr)
	}
}

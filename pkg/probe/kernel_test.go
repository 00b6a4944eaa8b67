package probe_test

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/probe"
)

// Two namespaces joined by a veth pair; B holds the addresses. A probe
// from A sees B's MAC for each, and nothing for an address nobody holds.
func TestKernelAnswered(t *testing.T) {
	netnstest.Require(t)
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.IP(t, a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
	for _, end := range []struct{ ns, mac, v4, ll string }{
		{a, "02:00:00:00:00:0a", "198.18.0.1/24", "fe80::a"},
		{b, "02:00:00:00:00:0b", "198.18.0.2/24", "fe80::b"},
	} {
		netnstest.IP(t, end.ns, "link", "set", "eth0", "address", end.mac, "addrgenmode", "none")
		netnstest.IP(t, end.ns, "addr", "add", end.v4, "dev", "eth0")
		netnstest.IP(t, end.ns, "addr", "add", end.ll+"/64", "dev", "eth0", "nodad")
	}
	netnstest.IP(t, b, "addr", "add", "198.18.0.50/32", "dev", "eth0")
	netnstest.IP(t, b, "addr", "add", "fd00:1ab::50/128", "dev", "eth0", "nodad")
	for _, ns := range []string{b, a} {
		netnstest.IP(t, ns, "link", "set", "eth0", "up")
	}
	waitMulticastRoute(t, a)
	for _, tc := range []struct {
		addr string
		want string // "" = nobody
	}{
		{"198.18.0.50", "02:00:00:00:00:0b"},
		{"fd00:1ab::50", "02:00:00:00:00:0b"},
		{"198.18.0.51", ""},
		{"fd00:1ab::51", ""},
	} {
		var mac net.HardwareAddr
		var ok bool
		err := netnstest.InNS(a, func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			mac, ok, err = probe.Answered(ifi, netip.MustParseAddr(tc.addr), time.Now().Add(300*time.Millisecond))
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		if got := macString(mac, ok); got != tc.want {
			t.Errorf("probe %s: answered by %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// waitMulticastRoute waits until ns can send IPv6 multicast on eth0 (the
// kernel adds ff00::/8 once the link is up).
func waitMulticastRoute(t *testing.T, ns string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("ip", "-n", ns, "-6", "route", "show", "table", "local", "ff00::/8").CombinedOutput()
		if strings.Contains(string(out), "eth0") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no IPv6 multicast route on eth0 in %s: %s", ns, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func macString(mac net.HardwareAddr, ok bool) string {
	if !ok {
		return ""
	}
	return mac.String()
}

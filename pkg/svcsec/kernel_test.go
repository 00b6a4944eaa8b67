package svcsec_test

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/svcsec"
)

func conn(t *testing.T, ns string) *nftables.Conn {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("open namespace %s: %v", ns, err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// Set writes exactly the guarded VIPs' rules, in one table, and Set(nil)
// deletes that table; a table of someone else's stays as it was.
func TestKernelSet(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t)
	nft(t, ns, "add", "table", "inet", "other")
	g := svcsec.New(conn(t, ns))
	v4, v6 := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("fd00:1ab::10")
	if err := g.Set(map[netip.Addr][]svcsec.Port{v4: {{Proto: 6, Port: 80}, {Proto: 17, Port: 53}}, v6: {{Proto: 6, Port: 443}}}); err != nil {
		t.Fatal(err)
	}
	got := nft(t, ns, "list", "table", "inet", svcsec.TableName)
	for _, want := range []string{
		"hook prerouting priority mangle",
		"ip daddr 198.18.0.10 tcp dport 80 accept",
		"ip daddr 198.18.0.10 udp dport 53 accept",
		"ip daddr 198.18.0.10 meta l4proto icmp accept",
		"ip daddr 198.18.0.10 drop",
		"ip6 daddr fd00:1ab::10 tcp dport 443 accept",
		"ip6 daddr fd00:1ab::10 meta l4proto ipv6-icmp accept",
		"ip6 daddr fd00:1ab::10 drop",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if err := g.Set(map[netip.Addr][]svcsec.Port{v4: {{Proto: 6, Port: 8080}}}); err != nil {
		t.Fatal(err)
	}
	if got := nft(t, ns, "list", "table", "inet", svcsec.TableName); strings.Contains(got, "dport 80 ") || strings.Contains(got, "fd00") || !strings.Contains(got, "dport 8080 accept") {
		t.Errorf("after the second Set:\n%s", got)
	}
	if err := g.Set(nil); err != nil {
		t.Fatal(err)
	}
	if got := nft(t, ns, "list", "tables"); strings.Contains(got, svcsec.TableName) || !strings.Contains(got, "table inet other") {
		t.Errorf("after Set(nil): tables\n%s", got)
	}
}

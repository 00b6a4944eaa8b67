//go:build linux

package checker

import (
	"context"
	"net/netip"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/internal/netnstest"
)

// The probes against real namespaces: a "node" holding one IPv4 and one
// IPv6 VIP and a "client" joined by a veth pair. The node sampler sees the
// VIPs (not the node's own addresses) and the prober gets ARP and NDP
// answers from the node's MAC.
func TestProbesSeeHolderAndAnswers(t *testing.T) {
	client, node := netnstest.New(t), netnstest.New(t)
	netnstest.IP(t, client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", node)
	for ns, mac := range map[string]string{client: "02:00:00:00:00:02", node: "02:00:00:00:00:11"} {
		netnstest.IP(t, ns, "link", "set", "eth0", "address", mac)
		if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0").CombinedOutput(); err != nil {
			t.Fatalf("sysctl in %s: %v: %s", ns, err, out)
		}
	}
	netnstest.IP(t, client, "addr", "add", "198.18.0.2/24", "dev", "eth0")
	netnstest.IP(t, client, "addr", "add", "fd00:1ab::2/64", "dev", "eth0", "nodad")
	netnstest.IP(t, node, "addr", "add", "198.18.0.11/24", "dev", "eth0")
	netnstest.IP(t, node, "addr", "add", "fd00:1ab::11/64", "dev", "eth0", "nodad")
	netnstest.IP(t, node, "addr", "add", vip.String()+"/32", "dev", "eth0")
	netnstest.IP(t, node, "addr", "add", v6.String()+"/128", "dev", "eth0", "nodad")
	for _, ns := range []string{client, node} {
		netnstest.IP(t, ns, "link", "set", "lo", "up")
		netnstest.IP(t, ns, "link", "set", "eth0", "up")
	}
	time.Sleep(200 * time.Millisecond) // link-local addresses come up

	s, err := NewNodeSampler([]Node{{Name: "node1", NS: node, Own: []netip.Addr{netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("fd00:1ab::11")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := NewProber(client, "eth0", s.Node)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{LeaseDuration: 5 * time.Second}, time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = s.Run(ctx, c, 100*time.Millisecond) }()
	go func() {
		defer wg.Done()
		_ = p.Run(ctx, c, 100*time.Millisecond, func() []netip.Addr { return []netip.Addr{vip, v6} })
	}()
	wg.Wait()

	if diff := cmp.Diff(map[netip.Addr][]string{vip: {"node1"}, v6: {"node1"}}, c.Held()); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	for _, a := range []netip.Addr{vip, v6} {
		if c.LastAnswer(a).IsZero() {
			t.Errorf("no ARP/NDP answer seen for %s", a)
		}
	}
	if vs := c.Violations(); len(vs) != 0 {
		t.Errorf("violations with one holder: %v", vs)
	}
}

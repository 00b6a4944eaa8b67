package arpguard_test

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/arpguard"
)

// Addresses of the lab LAN (see lab).
const (
	nodeIP  = "198.18.0.1"
	vip     = "198.18.0.200"
	vip2    = "198.18.0.201"
	nodeIP6 = "fd00:1ab::1"
	vip6    = "fd00:1ab::200"
)

// lab creates a LAN of two namespaces joined by a veth pair, each end
// called eth0, and returns their names:
//
//	node    eth0 198.18.0.1/24, fd00:1ab::1/64
//	        lo   198.18.0.200/32, 198.18.0.201/32, fd00:1ab::200/128 (the VIPs)
//	client  eth0 198.18.0.2/24, fd00:1ab::2/64
func lab(t *testing.T) (node, client string) {
	t.Helper()
	netnstest.Require(t)
	for _, tool := range []string{"arping", "ndisc6", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("kernel test: needs %s", tool)
		}
	}
	node, client = netnstest.New(t), netnstest.New(t)
	netnstest.IP(t, node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", client)
	netnstest.IP(t, node, "addr", "add", nodeIP+"/24", "dev", "eth0")
	netnstest.IP(t, node, "addr", "add", nodeIP6+"/64", "dev", "eth0", "nodad")
	netnstest.IP(t, client, "addr", "add", "198.18.0.2/24", "dev", "eth0")
	netnstest.IP(t, client, "addr", "add", "fd00:1ab::2/64", "dev", "eth0", "nodad")
	for _, a := range []string{vip + "/32", vip2 + "/32"} {
		netnstest.IP(t, node, "addr", "add", a, "dev", "lo")
	}
	netnstest.IP(t, node, "addr", "add", vip6+"/128", "dev", "lo", "nodad")
	for _, ns := range []string{node, client} {
		netnstest.IP(t, ns, "link", "set", "lo", "up")
		netnstest.IP(t, ns, "link", "set", "eth0", "up")
	}
	// The client reaches the VIPs through the node, as a BGP peer would.
	netnstest.IP(t, client, "route", "add", vip+"/32", "via", nodeIP)
	waitRoute(t, node, multicast6)
	waitRoute(t, client, multicast6)
	waitRoute(t, node, netip.MustParsePrefix(vip6+"/128")) // local, from a work item
	netnstest.IP(t, client, "route", "add", vip6+"/128", "via", nodeIP6)
	return node, client
}

// multicast6 is the destination of the multicast route IPv6 adds for an
// interface once it has carrier, which the kernel reports a moment after
// both ends of a veth pair are up: until then a neighbour solicitation
// cannot be sent ("Network is unreachable").
var multicast6 = netip.MustParsePrefix("ff00::/8")

// waitRoute waits until namespace ns has a route to dst, in any table.
func waitRoute(t *testing.T, ns string, dst netip.Prefix) {
	t.Helper()
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	updates, done := make(chan netlink.RouteUpdate, 64), make(chan struct{})
	defer close(done)
	opts := netlink.RouteSubscribeOptions{Namespace: &nsh, ListExisting: true}
	if err := netlink.RouteSubscribeWithOptions(updates, done, opts); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case u, ok := <-updates:
			if !ok {
				t.Fatalf("route updates of %s ended", ns)
			}
			if p, ok := prefixOf(u.Dst); ok && p == dst && u.Type == unix.RTM_NEWROUTE {
				return
			}
		case <-timeout:
			t.Fatalf("no route to %s in %s after 10s", dst, ns)
		}
	}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), ok
}

// conn returns an nftables connection into namespace ns.
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

// run runs a command inside namespace ns and returns its output and exit
// code; it fails t if the command could not run at all.
func run(t *testing.T, ns string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v: %s", args, err, out)
	}
	return string(out), 0
}

// arpAnswered reports whether the node answers the client's ARP request
// for ip on the LAN (one request, one second to answer).
func arpAnswered(t *testing.T, client, ip string) bool {
	t.Helper()
	out, code := run(t, client, "arping", "-c1", "-w1", "-I", "eth0", ip)
	if code > 1 {
		t.Fatalf("arping %s: exit %d: %s", ip, code, out)
	}
	return code == 0
}

// ndpAnswered reports whether the node answers the client's neighbour
// solicitation for ip on the LAN (one solicitation, 500ms to answer).
func ndpAnswered(t *testing.T, client, ip string) bool {
	t.Helper()
	out, code := run(t, client, "ndisc6", "-1", "-r1", "-w500", ip, "eth0")
	if code > 2 {
		t.Fatalf("ndisc6 %s: exit %d: %s", ip, code, out)
	}
	if code == 1 {
		t.Fatalf("ndisc6 %s: %s", ip, out)
	}
	return code == 0
}

// ruleset returns "nft list ruleset" in ns.
func ruleset(t *testing.T, ns string) string {
	t.Helper()
	out, code := run(t, ns, "nft", "list", "ruleset")
	if code != 0 {
		t.Fatalf("nft list ruleset: exit %d: %s", code, out)
	}
	return out
}

func set(t *testing.T, g *arpguard.Guard, ss ...string) {
	t.Helper()
	var as []netip.Addr
	for _, s := range ss {
		as = append(as, netip.MustParseAddr(s))
	}
	if err := g.Set(as); err != nil {
		t.Fatalf("Set(%v): %v", ss, err)
	}
}

// pinNode gives the client a permanent neighbour entry for the node's
// addresses and flushes the node's neighbour table: the node then has to
// resolve the client by itself when it answers, as a node does for a peer
// router whose entry expired.
func pinNode(t *testing.T, node, client string) {
	t.Helper()
	l, err := netnstest.HandleAt(t, node).LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	mac := l.Attrs().HardwareAddr.String()
	for _, ip := range []string{nodeIP, nodeIP6} {
		netnstest.IP(t, client, "neigh", "replace", ip, "lladdr", mac, "dev", "eth0", "nud", "permanent")
	}
	netnstest.IP(t, node, "neigh", "flush", "all")
}

// connect opens a TCP connection from the client to ip, which the client
// routes through the node, and reads one byte the node sends on it. It
// fails t unless the node accepted the connection.
func connect(t *testing.T, node, client, ip string) {
	t.Helper()
	var ln net.Listener
	err := netnstest.InNS(node, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(ip, "0"))
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in the node: %v", ip, err)
	}
	served := make(chan error, 1)
	go func() { served <- serveOne(ln) }()
	defer func() {
		ln.Close()
		if err := <-served; err != nil {
			t.Errorf("node: %v", err)
		}
	}()
	err = netnstest.InNS(client, func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 1))
		return err
	})
	if err != nil {
		t.Fatalf("client to %s: %v", ln.Addr(), err)
	}
}

// serveOne accepts one connection on ln and writes one byte to it.
func serveOne(ln net.Listener) error {
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte{1})
	return err
}

// clientKnows reports whether the client has a neighbour entry for ip,
// which it can only have learnt from an ARP or NDP packet of the node.
func clientKnows(t *testing.T, client, ip string) bool {
	t.Helper()
	want := netip.MustParseAddr(ip)
	ns, err := netnstest.HandleAt(t, client).NeighList(0, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == want {
			return true
		}
	}
	return false
}

// hasTable reports whether "nft list tables" in ns lists table.
func hasTable(t *testing.T, ns, table string) bool {
	t.Helper()
	out, code := run(t, ns, "nft", "list", "tables")
	if code != 0 {
		t.Fatalf("nft list tables: exit %d: %s", code, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "table "+table {
			return true
		}
	}
	return false
}

func TestKernelARPGuard(t *testing.T) {
	node, client := lab(t)
	g := arpguard.New(conn(t, node))

	// The problem: a VIP on lo is answered on eth0 (arp_ignore=0), and the
	// node's own ARP requests, sent for traffic from the VIP, carry it.
	if !arpAnswered(t, client, vip) {
		t.Fatal("without the guard the node does not answer ARP for a VIP on lo: the lab does not show the problem")
	}
	pinNode(t, node, client)
	connect(t, node, client, vip)
	if !clientKnows(t, client, vip) {
		t.Error("without the guard the node's ARP request for the client did not carry the VIP as sender")
	}
	netnstest.IP(t, client, "neigh", "flush", "to", vip)

	set(t, g, vip)
	t.Logf("nft list ruleset in the node:\n%s", ruleset(t, node))
	if arpAnswered(t, client, vip) {
		t.Errorf("the node answers ARP for %s, which is guarded", vip)
	}
	if !arpAnswered(t, client, nodeIP) {
		t.Errorf("the node does not answer ARP for its own address %s", nodeIP)
	}
	if !arpAnswered(t, client, vip2) {
		t.Errorf("the node does not answer ARP for %s, which is not guarded", vip2)
	}
	pinNode(t, node, client)
	connect(t, node, client, vip)
	if clientKnows(t, client, vip) {
		t.Errorf("the client learnt %s from the node's ARP request", vip)
	}

	set(t, g, vip2)
	if !arpAnswered(t, client, vip) {
		t.Errorf("the node does not answer ARP for %s after it left the set", vip)
	}
	if arpAnswered(t, client, vip2) {
		t.Errorf("the node answers ARP for %s, which is guarded", vip2)
	}

	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if hasTable(t, node, "arp vigil") {
		t.Errorf("table arp vigil is still there after Close:\n%s", ruleset(t, node))
	}
	if !arpAnswered(t, client, vip2) {
		t.Errorf("the node does not answer ARP for %s after Close", vip2)
	}
	if err := g.Set([]netip.Addr{netip.MustParseAddr(vip)}); !errors.Is(err, arpguard.ErrClosed) {
		t.Errorf("Set after Close: error %v, want ErrClosed", err)
	}
}

// TestKernelNDPNotAnsweredForLoopback proves that the kernel does not
// answer a neighbour solicitation on eth0 for an IPv6 address on lo, and
// does not use such an address as the source of its own solicitations,
// so IPv6 VIPs need no guard; and that a guard leaves this so.
func TestKernelNDPNotAnsweredForLoopback(t *testing.T) {
	node, client := lab(t)
	if !ndpAnswered(t, client, nodeIP6) {
		t.Fatalf("the node does not answer NDP for its own %s: the lab or ndisc6 is broken", nodeIP6)
	}
	check := func(when string) {
		t.Helper()
		if ndpAnswered(t, client, vip6) {
			t.Errorf("%s: the node answers a neighbour solicitation on eth0 for %s, which is on lo", when, vip6)
		}
		pinNode(t, node, client)
		connect(t, node, client, vip6)
		if clientKnows(t, client, vip6) {
			t.Errorf("%s: the client learnt %s from the node's NDP", when, vip6)
		}
	}
	check("without a guard")

	g := arpguard.New(conn(t, node))
	set(t, g, vip, vip6)
	check("with a guard")
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestKernelRepairs checks that Set restores vigil's table after someone
// else changed it, and that the guard never touches another table.
func TestKernelRepairs(t *testing.T) {
	node, client := lab(t)
	if out, code := run(t, node, "nft", "add", "table", "arp", "other"); code != 0 {
		t.Fatalf("nft add table: %s", out)
	}
	g := arpguard.New(conn(t, node))
	for _, tc := range []struct{ name, cmd string }{
		{"table deleted", "delete table arp vigil"},
		{"chain flushed", "flush chain arp vigil output"},
		{"rule added", "add rule arp vigil output accept"},
		{"set flushed", "flush set arp vigil bgp_vips"},
		{"chain deleted", "flush table arp vigil; delete chain arp vigil output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set(t, g, vip)
			want := ruleset(t, node)
			if out, code := run(t, node, "nft", tc.cmd); code != 0 {
				t.Fatalf("nft %s: %s", tc.cmd, out)
			}
			set(t, g, vip)
			if got := ruleset(t, node); got != want {
				t.Errorf("after %q and Set, ruleset\n%s\nwant\n%s", tc.cmd, got, want)
			}
			if arpAnswered(t, client, vip) {
				t.Errorf("after %q and Set, the node answers ARP for %s", tc.cmd, vip)
			}
		})
	}
	set(t, g)
	if hasTable(t, node, "arp vigil") {
		t.Errorf("table arp vigil is still there after Set(nil)")
	}
	if !hasTable(t, node, "arp other") {
		t.Errorf("table arp other is gone")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestKernelCleanup checks that Cleanup removes a table a killed agent
// left behind, and is a no-op when there is none.
func TestKernelCleanup(t *testing.T) {
	node, client := lab(t)
	set(t, arpguard.New(conn(t, node)), vip) // never closed: the agent died
	if arpAnswered(t, client, vip) {
		t.Fatalf("the node answers ARP for %s, which is guarded", vip)
	}
	for range 2 {
		if err := arpguard.Cleanup(conn(t, node)); err != nil {
			t.Fatal(err)
		}
		if hasTable(t, node, "arp vigil") {
			t.Fatalf("table arp vigil is still there after Cleanup")
		}
	}
	if !arpAnswered(t, client, vip) {
		t.Errorf("the node does not answer ARP for %s after Cleanup", vip)
	}
}

// TestKernelConcurrentSet calls Set from several goroutines at once: the
// table ends up holding exactly one caller's addresses.
func TestKernelConcurrentSet(t *testing.T) {
	node, _ := lab(t)
	g := arpguard.New(conn(t, node))
	sets := [][]netip.Addr{
		{netip.MustParseAddr(vip)},
		{netip.MustParseAddr(vip2)},
		{netip.MustParseAddr(vip), netip.MustParseAddr(vip2)},
		{netip.MustParseAddr("198.18.0.202")},
	}
	errc := make(chan error, len(sets))
	for _, s := range sets {
		go func() { errc <- g.Set(s) }()
	}
	for range sets {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	got := ruleset(t, node)
	matches := 0
	for _, s := range sets {
		if strings.Contains(got, "elements = { "+joined(s)+" }") {
			matches++
		}
	}
	if matches != 1 {
		t.Errorf("after concurrent Sets the ruleset holds %d of the callers' sets, want 1:\n%s", matches, got)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

func joined(as []netip.Addr) string {
	ss := make([]string, len(as))
	for i, a := range as {
		ss[i] = a.String()
	}
	return strings.Join(ss, ", ")
}

// TestKernelSetOneByOne grows the set one address per Set, as the routed
// dataplane does when Services are created one after another, then shrinks
// it: each Set writes only what differs from its last write, and the set
// holds exactly the addresses of the last Set. An element deleted behind
// the guard's back is put back by the next Set that changes nothing (a
// check), not by one that adds another address; a table deleted behind
// its back makes the next write fail, and that Set rebuilds it.
func TestKernelSetOneByOne(t *testing.T) {
	node, _ := lab(t)
	g := arpguard.New(conn(t, node))
	var all []netip.Addr
	for i := range 200 {
		all = append(all, netip.AddrFrom4([4]byte{198, 18, 1 + byte(i/250), 1 + byte(i%250)}))
		if err := g.Set(all); err != nil {
			t.Fatal(err)
		}
	}
	for len(all) > 150 {
		all = all[1:]
		if err := g.Set(all); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(all, setElements(t, node), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Fatalf("after 200 adds and 50 deletes (-want +got):\n%s", diff)
	}
	gone := all[0]
	if out, code := run(t, node, "nft", "delete", "element", "arp", "vigil", "bgp_vips", "{ "+gone.String()+" }"); code != 0 {
		t.Fatalf("nft delete element: %s", out)
	}
	if slices.Contains(setElements(t, node), gone) {
		t.Fatalf("nft delete element left %s in the set", gone)
	}
	all = append(all, netip.MustParseAddr("198.18.2.1"))
	if err := g.Set(all); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(setElements(t, node), gone) {
		t.Errorf("a Set that adds an address read the set back: %s is there again", gone)
	}
	if err := g.Set(all); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all, setElements(t, node), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("after a check (-want +got):\n%s", diff)
	}
	// A write that fails (the table is gone) is followed by a repair.
	if out, code := run(t, node, "nft", "delete", "table", "arp", "vigil"); code != 0 {
		t.Fatalf("nft delete table: %s", out)
	}
	all = append(all, netip.MustParseAddr("198.18.2.2"))
	if err := g.Set(all); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all, setElements(t, node), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("after the table was deleted and a Set added an address (-want +got):\n%s", diff)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// setElements lists the guard's set in ns, sorted.
func setElements(t *testing.T, ns string) []netip.Addr {
	t.Helper()
	out, code := run(t, ns, "nft", "list", "set", "arp", "vigil", "bgp_vips")
	if code != 0 {
		t.Fatalf("nft list set: exit %d: %s", code, out)
	}
	var got []netip.Addr
	for _, f := range strings.FieldsFunc(out, func(r rune) bool { return r == ' ' || r == ',' || r == '\n' || r == '\t' || r == '{' || r == '}' }) {
		if a, err := netip.ParseAddr(f); err == nil {
			got = append(got, a)
		}
	}
	slices.SortFunc(got, netip.Addr.Compare)
	return got
}

package announce_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/announce"
)

// The link between the two test namespaces: A announces, B listens.
const (
	macA     = "02:00:00:00:00:0a"
	macB     = "02:00:00:00:00:0b"
	macStale = "02:00:00:00:00:99" // B's stale entries for the VIPs point here
	llA      = "fe80::a"
	llB      = "fe80::b"
)

// kernelWait bounds how long a kernel test waits for a frame or a neighbour
// entry; only a failing test waits that long.
const kernelWait = 5 * time.Second

var cmpAddr = cmpopts.EquateComparable(netip.Addr{})

// link is a veth pair between two test namespaces.
type link struct {
	A, B   string // namespace names
	hB     *netlink.Handle
	indexB int            // eth0 in B
	ifA    *net.Interface // eth0 in A
	ifB    *net.Interface // eth0 in B
}

// newLink creates namespaces A and B joined by a veth pair, both ends
// called eth0, with addresses from 198.18.0.0/24 and fd00:1ab::/64, fixed
// link-local addresses and no DAD. B has locktime 0 and stale neighbour
// entries at macStale for the VIPs given.
func newLink(t *testing.T, vips ...netip.Addr) *link {
	t.Helper()
	if _, err := exec.LookPath("sysctl"); err != nil {
		t.Skip("kernel test: needs the sysctl command (procps)")
	}
	l := &link{A: netnstest.New(t), B: netnstest.New(t)}
	netnstest.IP(t, l.A, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", l.B)
	for _, end := range []struct{ ns, mac, v4, ll, v6 string }{
		{l.A, macA, "198.18.0.1/24", llA, "fd00:1ab::1/64"},
		{l.B, macB, "198.18.0.2/24", llB, "fd00:1ab::2/64"},
	} {
		netnstest.IP(t, end.ns, "link", "set", "eth0", "address", end.mac, "addrgenmode", "none")
		netnstest.IP(t, end.ns, "addr", "add", end.v4, "dev", "eth0")
		netnstest.IP(t, end.ns, "addr", "add", end.ll+"/64", "dev", "eth0", "nodad")
		netnstest.IP(t, end.ns, "addr", "add", end.v6, "dev", "eth0", "nodad")
	}
	sysctlIn(t, l.B, "net.ipv4.neigh.eth0.locktime=0")
	// B first: bringing up A then finds the peer up, so A has carrier and
	// a working qdisc as soon as "ip link set up" returns.
	for _, ns := range []string{l.B, l.A} {
		netnstest.IP(t, ns, "link", "set", "lo", "up")
		netnstest.IP(t, ns, "link", "set", "eth0", "up")
	}
	for _, vip := range vips {
		netnstest.IP(t, l.B, "neigh", "replace", vip.String(), "lladdr", macStale, "dev", "eth0", "nud", "stale")
	}

	l.hB = netnstest.HandleAt(t, l.B)
	waitIPv6Ready(t, netnstest.HandleAt(t, l.A), l.A)
	waitIPv6Ready(t, l.hB, l.B)
	nl, err := l.hB.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	l.indexB = nl.Attrs().Index
	l.ifA = interfaceIn(t, l.A, "eth0")
	l.ifB = interfaceIn(t, l.B, "eth0")

	// The stale entries are there and point elsewhere, so a later match
	// proves the announcement changed them.
	for _, vip := range vips {
		if got := l.neighbour(t, vip); got != macStale {
			t.Fatalf("B's entry for %s is %q before announcing, want %s", vip, got, macStale)
		}
	}
	return l
}

func sysctlIn(t *testing.T, ns, kv string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-w", kv).CombinedOutput(); err != nil {
		t.Fatalf("sysctl -w %s in %s: %v: %s", kv, ns, err, out)
	}
}

// interfaceIn returns the net.Interface called name in namespace ns.
func interfaceIn(t *testing.T, ns, name string) *net.Interface {
	t.Helper()
	var ifi *net.Interface
	err := netnstest.InNS(ns, func() error {
		var err error
		ifi, err = net.InterfaceByName(name)
		return err
	})
	if err != nil {
		t.Fatalf("interface %s in %s: %v", name, ns, err)
	}
	return ifi
}

// neighbour returns the link-layer address of B's entry for ip, or "" if
// B has none.
func (l *link) neighbour(t *testing.T, ip netip.Addr) string {
	t.Helper()
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	list, err := l.hB.NeighList(l.indexB, family)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
			return n.HardwareAddr.String()
		}
	}
	return ""
}

// waitNeighbour waits until B's entry for ip points at want. Once B has
// received the announcement the kernel has processed it or is about to, so
// this normally succeeds at the first look.
func (l *link) waitNeighbour(t *testing.T, ip netip.Addr, want string) {
	t.Helper()
	var got string
	eventually(t, func() bool {
		got = l.neighbour(t, ip)
		return got == want
	}, func() string {
		return fmt.Sprintf("B's neighbour entry for %s is %q, want %s", ip, got, want)
	})
}

// waitIPv6Ready waits until addrconf has configured eth0 behind h, which it
// does only once the link is operationally up, some time after "ip link set
// up" returns, from the kernel's link-watch work. Until then eth0 has no
// ff00::/8 route, so IPv6 multicast can be neither sent nor received.
func waitIPv6Ready(t *testing.T, h *netlink.Handle, ns string) {
	t.Helper()
	nl, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	filter := &netlink.Route{LinkIndex: nl.Attrs().Index, Type: unix.RTN_MULTICAST, Table: unix.RT_TABLE_UNSPEC}
	mask := netlink.RT_FILTER_OIF | netlink.RT_FILTER_TYPE | netlink.RT_FILTER_TABLE
	eventually(t, func() bool {
		routes, err := h.RouteListFiltered(netlink.FAMILY_V6, filter, mask)
		if err != nil {
			t.Fatal(err)
		}
		return len(routes) > 0
	}, func() string { return "eth0 in " + ns + " never got its IPv6 multicast route" })
}

// eventually waits until cond holds, looking every 10ms, and fails t with
// msg() after kernelWait. It is for kernel state that changes
// asynchronously; only a failing test waits long.
func eventually(t *testing.T, cond func() bool, msg func() string) {
	t.Helper()
	if cond() {
		return
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(kernelWait)
	defer deadline.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return
			}
		case <-deadline.C:
			t.Fatal(msg())
		}
	}
}

// capture is a packet socket on B's eth0 that sees every frame.
type capture struct{ pc *packet.Conn }

func (l *link) capture(t *testing.T) *capture {
	t.Helper()
	var pc *packet.Conn
	err := netnstest.InNS(l.B, func() error {
		var err error
		pc, err = packet.Listen(l.ifB, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	})
	if err != nil {
		t.Fatalf("capture on B: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	return &capture{pc: pc}
}

// collect reads frames until match has accepted n of them, and returns
// what match made of them.
func (c *capture) collect(t *testing.T, n int, match func(ethernet.Frame) (any, bool)) []any {
	t.Helper()
	if err := c.pc.SetReadDeadline(time.Now().Add(kernelWait)); err != nil {
		t.Fatal(err)
	}
	var out []any
	buf := make([]byte, 2048)
	for len(out) < n {
		nr, _, err := c.pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("capture on B after %d of %d matching frames: %v", len(out), n, err)
		}
		var f ethernet.Frame
		if err := f.UnmarshalBinary(buf[:nr]); err != nil {
			continue
		}
		if v, ok := match(f); ok {
			out = append(out, v)
		}
	}
	return out
}

// garp is what B sees of one gratuitous ARP frame.
type garp struct {
	EthDst, EthSrc     string
	Op                 arp.Operation
	SenderHW, TargetHW string
	SenderIP, TargetIP netip.Addr
}

func matchGARP(vip netip.Addr) func(ethernet.Frame) (any, bool) {
	return func(f ethernet.Frame) (any, bool) {
		if f.EtherType != ethernet.EtherTypeARP {
			return nil, false
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil || p.SenderIP != vip {
			return nil, false
		}
		return garp{
			EthDst: f.Destination.String(), EthSrc: f.Source.String(), Op: p.Operation,
			SenderHW: p.SenderHardwareAddr.String(), TargetHW: p.TargetHardwareAddr.String(),
			SenderIP: p.SenderIP, TargetIP: p.TargetIP,
		}, true
	}
}

func wantGARP(vip netip.Addr) []any {
	return []any{
		garp{EthDst: "ff:ff:ff:ff:ff:ff", EthSrc: macA, Op: arp.OperationRequest,
			SenderHW: macA, TargetHW: "00:00:00:00:00:00", SenderIP: vip, TargetIP: vip},
		garp{EthDst: "ff:ff:ff:ff:ff:ff", EthSrc: macA, Op: arp.OperationReply,
			SenderHW: macA, TargetHW: macA, SenderIP: vip, TargetIP: vip},
	}
}

// na is what B sees of one neighbour advertisement.
type na struct {
	EthDst, EthSrc string
	Src, Dst       netip.Addr
	HopLimit       uint8
	NA             *ndp.NeighborAdvertisement
}

func matchNA(vip netip.Addr) func(ethernet.Frame) (any, bool) {
	return func(f ethernet.Frame) (any, bool) {
		b := f.Payload
		if f.EtherType != ethernet.EtherTypeIPv6 || len(b) < 40 || b[0]>>4 != 6 || b[6] != unix.IPPROTO_ICMPV6 {
			return nil, false
		}
		plen := int(binary.BigEndian.Uint16(b[4:6]))
		if len(b) < 40+plen {
			return nil, false
		}
		m, err := ndp.ParseMessage(b[40 : 40+plen])
		if err != nil {
			return nil, false
		}
		adv, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || adv.TargetAddress != vip {
			return nil, false
		}
		return na{
			EthDst: f.Destination.String(), EthSrc: f.Source.String(),
			Src: netip.AddrFrom16([16]byte(b[8:24])), Dst: netip.AddrFrom16([16]byte(b[24:40])),
			HopLimit: b[7], NA: adv,
		}, true
	}
}

func wantNA(vip netip.Addr) []any {
	hw, _ := net.ParseMAC(macA)
	return []any{na{
		EthDst: "33:33:00:00:00:01", EthSrc: macA,
		Src: netip.MustParseAddr(llA), Dst: netip.MustParseAddr("ff02::1"), HopLimit: 255,
		NA: &ndp.NeighborAdvertisement{
			Override:      true,
			TargetAddress: vip,
			Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: hw}},
		},
	}}
}

// connIn opens a Conn on A's eth0 from inside A. The socket stays in A, so
// it can be used from any goroutine afterwards.
func (l *link) connIn(t *testing.T, open func(*net.Interface) (announce.Conn, error)) announce.Conn {
	t.Helper()
	var c announce.Conn
	err := netnstest.InNS(l.A, func() error {
		var err error
		c, err = open(l.ifA)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestKernelGratuitousARP(t *testing.T) {
	vip := netip.MustParseAddr("198.18.0.100")
	l := newLink(t, vip)
	c := l.connIn(t, announce.NewARP)
	capB := l.capture(t)

	if err := c.Announce(vip); err != nil {
		t.Fatal(err)
	}
	got := capB.collect(t, 2, matchGARP(vip))
	if diff := cmp.Diff(wantGARP(vip), got, cmpAddr); diff != "" {
		t.Errorf("frames B saw (-want +got):\n%s", diff)
	}
	l.waitNeighbour(t, vip, macA)

	if err := c.Announce(netip.MustParseAddr("fd00:1ab::100")); err == nil {
		t.Error("ARP Announce of an IPv6 address = nil error, want error")
	}
}

func TestKernelUnsolicitedNA(t *testing.T) {
	vip := netip.MustParseAddr("fd00:1ab::100")
	l := newLink(t, vip)
	c := l.connIn(t, announce.NewNDP)
	capB := l.capture(t)

	if err := c.Announce(vip); err != nil {
		t.Fatal(err)
	}
	got := capB.collect(t, 1, matchNA(vip))
	if diff := cmp.Diff(wantNA(vip), got, cmpAddr); diff != "" {
		t.Errorf("frames B saw (-want +got):\n%s", diff)
	}
	l.waitNeighbour(t, vip, macA)

	if err := c.Announce(netip.MustParseAddr("198.18.0.100")); err == nil {
		t.Error("NDP Announce of an IPv4 address = nil error, want error")
	}
}

// TestKernelAnnouncer runs the whole Announcer from Open: Add announces at
// once, and B's stale entries for both VIPs move to A's MAC.
func TestKernelAnnouncer(t *testing.T) {
	vip4 := netip.MustParseAddr("198.18.0.101")
	vip6 := netip.MustParseAddr("fd00:1ab::101")
	l := newLink(t, vip4, vip6)
	var a *announce.Announcer
	err := netnstest.InNS(l.A, func() error {
		var err error
		a, err = announce.Open(l.ifA, announce.Options{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	capB := l.capture(t)

	if err := a.Add(vip4); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(vip6); err != nil {
		t.Fatal(err)
	}
	got := capB.collect(t, 2, matchGARP(vip4))
	if diff := cmp.Diff(wantGARP(vip4), got, cmpAddr); diff != "" {
		t.Errorf("ARP frames B saw (-want +got):\n%s", diff)
	}
	l.waitNeighbour(t, vip4, macA)
	l.waitNeighbour(t, vip6, macA)
	if diff := cmp.Diff([]netip.Addr{vip4, vip6}, a.Addrs(), cmpAddr); diff != "" {
		t.Errorf("Addrs() mismatch (-want +got):\n%s", diff)
	}
}

// TestKernelOpenWithoutIPv6 opens an Announcer on an interface with no IPv6
// link-local address: IPv4 still works and IPv6 is refused with the reason.
func TestKernelOpenWithoutIPv6(t *testing.T) {
	ns := netnstest.New(t)
	netnstest.IP(t, ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth2")
	for _, name := range []string{"eth1", "eth2"} {
		netnstest.IP(t, ns, "link", "set", name, "addrgenmode", "none")
	}
	netnstest.IP(t, ns, "addr", "add", "198.18.1.1/24", "dev", "eth1")
	netnstest.IP(t, ns, "link", "set", "eth2", "up")
	netnstest.IP(t, ns, "link", "set", "eth1", "up")
	ifi := interfaceIn(t, ns, "eth1")

	var a *announce.Announcer
	var ndpErr error
	err := netnstest.InNS(ns, func() error {
		if c, err := announce.NewNDP(ifi); err == nil {
			c.Close()
		} else {
			ndpErr = err
		}
		var err error
		a, err = announce.Open(ifi, announce.Options{})
		return err
	})
	if err != nil {
		t.Fatalf("Open on an interface without IPv6 = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t.Cleanup(func() {
		if err := a.Run(ctx); err != nil { // closes the ARP socket
			t.Errorf("Run: %v", err)
		}
	})

	if ndpErr == nil {
		t.Error("NewNDP on an interface without a link-local address = nil error, want error")
	}
	if err := a.Add(netip.MustParseAddr("198.18.1.100")); err != nil {
		t.Errorf("Add(IPv4) = %v, want nil", err)
	}
	err = a.Add(netip.MustParseAddr("fd00:1ab::100"))
	if err == nil || !strings.Contains(err.Error(), "NDP") || (ndpErr != nil && !strings.Contains(err.Error(), ndpErr.Error())) {
		t.Errorf("Add(IPv6) = %v, want an error saying NDP is unavailable and why (%v)", err, ndpErr)
	}
}

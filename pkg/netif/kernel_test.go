package netif_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/netif"
)

const eth0MAC = "02:00:00:00:01:00"

// fixture creates a namespace with two veth pairs, all inside it:
//
//	eth0  up    198.18.0.1/16, fd00:1ab::1/64   (MAC eth0MAC)
//	eth1  up    198.18.5.1/24, 198.18.9.9/32
//	eth2  down  198.18.6.1/24
//	eth3  up    (peer of eth2, no addresses)
//	lo    up    127.0.0.1/8, ::1/128
func fixture(t *testing.T) (string, *netlink.Handle) {
	t.Helper()
	ns := netnstest.New(t)
	netnstest.IP(t, ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	netnstest.IP(t, ns, "link", "add", "eth2", "type", "veth", "peer", "name", "eth3")
	netnstest.IP(t, ns, "link", "set", "eth0", "address", eth0MAC)
	netnstest.IP(t, ns, "addr", "add", "198.18.0.1/16", "dev", "eth0")
	netnstest.IP(t, ns, "addr", "add", "fd00:1ab::1/64", "dev", "eth0", "nodad")
	netnstest.IP(t, ns, "addr", "add", "198.18.5.1/24", "dev", "eth1")
	netnstest.IP(t, ns, "addr", "add", "198.18.9.9/32", "dev", "eth1")
	netnstest.IP(t, ns, "addr", "add", "198.18.6.1/24", "dev", "eth2")
	for _, l := range []string{"lo", "eth0", "eth1", "eth3"} {
		netnstest.IP(t, ns, "link", "set", l, "up")
	}
	return ns, netnstest.HandleAt(t, ns)
}

func openEth0(t *testing.T, h *netlink.Handle) *netif.Link {
	t.Helper()
	l, err := netif.OpenWith(h, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var cmpAddr = cmpopts.EquateComparable(netip.Addr{})

func TestKernelOpenWith(t *testing.T) {
	_, h := fixture(t)
	l := openEth0(t, h)
	nl, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	type info struct {
		Name  string
		Index int
		MAC   string
	}
	want := info{Name: "eth0", Index: nl.Attrs().Index, MAC: eth0MAC}
	got := info{Name: l.Name(), Index: l.Index(), MAC: l.HardwareAddr().String()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("link info mismatch (-want +got):\n%s", diff)
	}

	if _, err := netif.OpenWith(h, "nope0"); err == nil {
		t.Error("OpenWith(nope0) = nil error, want error for a missing link")
	}
}

// kernelAddr is what the kernel reports for one address.
type kernelAddr struct {
	Prefix    string
	NoDAD     bool
	Tentative bool
}

// kernelAddrs returns the addresses on link eth0 that are in 198.18.0.0/15
// or fd00:1ab::/64 and not eth0's fixture addresses.
func kernelAddrs(t *testing.T, h *netlink.Handle) []kernelAddr {
	t.Helper()
	link, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []kernelAddr
	for _, a := range list {
		ones, _ := a.Mask.Size()
		p := fmt.Sprintf("%s/%d", a.IP, ones)
		if p == "198.18.0.1/16" || p == "fd00:1ab::1/64" || a.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, kernelAddr{
			Prefix:    p,
			NoDAD:     a.Flags&unix.IFA_F_NODAD != 0,
			Tentative: a.Flags&unix.IFA_F_TENTATIVE != 0,
		})
	}
	return out
}

func TestKernelBindUnbind(t *testing.T) {
	_, h := fixture(t)
	l := openEth0(t, h)

	type result struct {
		Bind, BindAgain     bool
		Bound               []netip.Addr
		Kernel              []kernelAddr
		Unbind, UnbindAgain bool
		After               []netip.Addr
		KernelAfter         []kernelAddr
	}
	tests := []struct {
		name string
		addr netip.Addr
		want result
	}{
		{
			name: "ipv4",
			addr: netip.MustParseAddr("198.18.0.100"),
			want: result{
				Bind:   true,
				Bound:  []netip.Addr{netip.MustParseAddr("198.18.0.100")},
				Kernel: []kernelAddr{{Prefix: "198.18.0.100/32"}},
				Unbind: true,
			},
		},
		{
			name: "ipv6 without DAD",
			addr: netip.MustParseAddr("fd00:1ab::100"),
			want: result{
				Bind:   true,
				Bound:  []netip.Addr{netip.MustParseAddr("fd00:1ab::100")},
				Kernel: []kernelAddr{{Prefix: "fd00:1ab::100/128", NoDAD: true}},
				Unbind: true,
			},
		},
		{
			name: "ipv4-mapped ipv6 is bound as ipv4",
			addr: netip.MustParseAddr("::ffff:198.18.0.101"),
			want: result{
				Bind:   true,
				Bound:  []netip.Addr{netip.MustParseAddr("198.18.0.101")},
				Kernel: []kernelAddr{{Prefix: "198.18.0.101/32"}},
				Unbind: true,
			},
		},
		{
			name: "node address in its subnet is left alone",
			addr: netip.MustParseAddr("198.18.0.1"),
			want: result{},
		},
		{
			name: "node ipv6 address in its subnet is left alone",
			addr: netip.MustParseAddr("fd00:1ab::1"),
			want: result{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got result
			var errs []error
			b := func(v bool, err error) bool { errs = append(errs, err); return v }
			as := func(v []netip.Addr, err error) []netip.Addr { errs = append(errs, err); return v }
			got.Bind = b(l.Bind(tt.addr))
			got.BindAgain = b(l.Bind(tt.addr))
			got.Bound = as(l.Addrs())
			got.Kernel = kernelAddrs(t, h)
			got.Unbind = b(l.Unbind(tt.addr))
			got.UnbindAgain = b(l.Unbind(tt.addr))
			got.After = as(l.Addrs())
			got.KernelAfter = kernelAddrs(t, h)
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("bind/unbind %v mismatch (-want +got):\n%s", tt.addr, diff)
			}
		})
	}

	// The fixture addresses must have survived.
	link, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, a := range list {
		if !a.IP.IsLinkLocalUnicast() {
			have = append(have, a.IPNet.String())
		}
	}
	if diff := cmp.Diff([]string{"198.18.0.1/16", "fd00:1ab::1/64"}, have, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("eth0 addresses after the test mismatch (-want +got):\n%s", diff)
	}
}

func TestKernelBindRejects(t *testing.T) {
	_, h := fixture(t)
	l := openEth0(t, h)
	for _, a := range []netip.Addr{
		{},
		netip.IPv4Unspecified(),
		netip.IPv6Unspecified(),
		netip.MustParseAddr("::ffff:0.0.0.0"),
		netip.MustParseAddr("224.0.0.18"),
		netip.MustParseAddr("ff02::1"),
		netip.MustParseAddr("fe80::1%eth0"),
	} {
		if added, err := l.Bind(a); err == nil || added {
			t.Errorf("Bind(%v) = %v, %v; want false and an error", a, added, err)
		}
		if removed, err := l.Unbind(a); err == nil || removed {
			t.Errorf("Unbind(%v) = %v, %v; want false and an error", a, removed, err)
		}
	}
	if got := kernelAddrs(t, h); len(got) != 0 {
		t.Errorf("rejected addresses reached the kernel: %v", got)
	}
}

// TestKernelOpen covers Open, which uses the caller's namespace: every call
// runs on a thread switched into the test namespace.
func TestKernelOpen(t *testing.T) {
	ns, h := fixture(t)
	vip := netip.MustParseAddr("198.18.0.200")
	type result struct {
		Name           string
		Bind, Unbind   bool
		Bound, Unbound []netip.Addr
	}
	var got result
	err := netnstest.InNS(ns, func() error {
		l, err := netif.Open("eth0")
		if err != nil {
			return err
		}
		got.Name = l.Name()
		var errs []error
		b := func(v bool, err error) bool { errs = append(errs, err); return v }
		as := func(v []netip.Addr, err error) []netip.Addr { errs = append(errs, err); return v }
		got.Bind = b(l.Bind(vip))
		got.Bound = as(l.Addrs())
		got.Unbind = b(l.Unbind(vip))
		got.Unbound = as(l.Addrs())
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := result{Name: "eth0", Bind: true, Unbind: true, Bound: []netip.Addr{vip}}
	if diff := cmp.Diff(want, got, cmpAddr, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Open in namespace mismatch (-want +got):\n%s", diff)
	}
	if got := kernelAddrs(t, h); len(got) != 0 {
		t.Errorf("addresses left on eth0: %v", got)
	}
}

func TestKernelInterfaceFor(t *testing.T) {
	_, h := fixture(t)
	tests := []struct {
		addr    string
		want    string
		wantErr bool
	}{
		{addr: "198.18.0.50", want: "eth0"},
		{addr: "198.18.5.77", want: "eth1"},        // /24 on eth1 beats /16 on eth0
		{addr: "::ffff:198.18.5.77", want: "eth1"}, // unmapped first
		{addr: "198.18.6.77", want: "eth0"},        // eth2 has a /24 but is down
		{addr: "198.18.9.9", want: "eth0"},         // the /32 on eth1 is a VIP, not a subnet
		{addr: "fd00:1ab::77", want: "eth0"},
		{addr: "203.0.113.1", wantErr: true}, // no prefix contains it
		{addr: "fd00:1ac::1", wantErr: true}, // no prefix contains it
		{addr: "127.0.0.5", wantErr: true},   // loopback does not count
		{addr: "0.0.0.0", wantErr: true},
		{addr: "::", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			got, err := netif.InterfaceFor(h, netip.MustParseAddr(tt.addr))
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("InterfaceFor(%s) = %q, %v; want error %v", tt.addr, got, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("InterfaceFor(%s) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
	if _, err := netif.InterfaceFor(h, netip.Addr{}); err == nil {
		t.Error("InterfaceFor(zero Addr) = nil error, want error")
	}
}

// The loopback check must not depend on the address: a prefix on lo that
// contains a routable address still does not count.
func TestKernelInterfaceForSkipsLoopback(t *testing.T) {
	ns, h := fixture(t)
	netnstest.IP(t, ns, "addr", "add", "198.18.200.1/24", "dev", "lo")
	if got, err := netif.InterfaceFor(h, netip.MustParseAddr("198.18.200.7")); err != nil || got != "eth0" {
		t.Errorf("InterfaceFor(198.18.200.7) = %q, %v; want eth0 (the /24 on lo does not count)", got, err)
	}
}

func TestKernelMacvlan(t *testing.T) {
	ns := netnstest.New(t)
	netnstest.IP(t, ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	netnstest.IP(t, ns, "link", "set", "eth1", "up")
	netnstest.IP(t, ns, "link", "set", "eth0", "up")
	netnstest.IP(t, ns, "addr", "add", "198.18.5.2/24", "dev", "eth0")
	netnstest.IP(t, ns, "route", "add", "default", "via", "198.18.5.1")
	h := netnstest.HandleAt(t, ns)
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0xab, 0x01}

	l, err := netif.AddMacvlan(h, "eth0", "vglm-test", mac)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.HardwareAddr().String(); got != mac.String() {
		t.Errorf("macvlan MAC = %s, want %s", got, mac)
	}
	// Idempotent with the same parameters; replaced with another MAC.
	if _, err := netif.AddMacvlan(h, "eth0", "vglm-test", mac); err != nil {
		t.Fatalf("AddMacvlan again: %v", err)
	}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0xab, 0x02}
	l2, err := netif.AddMacvlan(h, "eth0", "vglm-test", other)
	if err != nil {
		t.Fatal(err)
	}
	if got := l2.HardwareAddr().String(); got != other.String() {
		t.Errorf("replaced macvlan MAC = %s, want %s", got, other)
	}
	names, err := netif.LinksWithPrefix(h, "vglm-")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"vglm-test"}, names); diff != "" {
		t.Errorf("LinksWithPrefix (-want +got):\n%s", diff)
	}
	def, err := netif.DefaultRouteInterface(h)
	if err != nil || def != "eth0" {
		t.Errorf("DefaultRouteInterface = %q, %v; want eth0", def, err)
	}
	for _, want := range []bool{true, false} {
		got, err := netif.DeleteLink(h, "vglm-test")
		if err != nil || got != want {
			t.Errorf("DeleteLink = %v, %v; want %v", got, err, want)
		}
	}
}

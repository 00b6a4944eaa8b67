package vip_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/vigil-lb/vigil/internal/netnstest"
)

// claim is one frame on the wire that tells neighbours where an address
// is: an ARP packet with it as sender, or a neighbour advertisement of it.
type claim struct {
	Kind string // "arp request", "arp reply", "na"
	Addr netip.Addr
}

// claimOf returns the claim f makes, if any.
func claimOf(f ethernet.Frame) (claim, bool) {
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		var p arp.Packet
		if p.UnmarshalBinary(f.Payload) != nil {
			return claim{}, false
		}
		kind := map[arp.Operation]string{arp.OperationRequest: "arp request", arp.OperationReply: "arp reply"}[p.Operation]
		return claim{kind, p.SenderIP}, true
	case ethernet.EtherTypeIPv6:
		b := f.Payload
		if len(b) < 40 || b[6] != unix.IPPROTO_ICMPV6 || len(b) < 40+int(binary.BigEndian.Uint16(b[4:6])) {
			return claim{}, false
		}
		m, err := ndp.ParseMessage(b[40 : 40+int(binary.BigEndian.Uint16(b[4:6]))])
		if adv, ok := m.(*ndp.NeighborAdvertisement); err == nil && ok {
			return claim{"na", adv.TargetAddress}, true
		}
	}
	return claim{}, false
}

// listen opens a packet socket on eth1, eth0's peer, in ns.
func listen(t *testing.T, ns string) *packet.Conn {
	t.Helper()
	var pc *packet.Conn
	if err := netnstest.InNS(ns, func() error {
		ifi, err := net.InterfaceByName("eth1")
		if err != nil {
			return err
		}
		pc, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	}); err != nil {
		t.Fatalf("listen on eth1: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// claimsUntil reads frames until one claims sentinel, and returns the
// claims before it.
func claimsUntil(t *testing.T, pc *packet.Conn, sentinel netip.Addr) []claim {
	t.Helper()
	if err := pc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var out []claim
	buf := make([]byte, 2048)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no frame claiming %s (after %v): %v", sentinel, out, err)
		}
		var f ethernet.Frame
		if f.UnmarshalBinary(buf[:n]) != nil {
			continue
		}
		if c, ok := claimOf(f); ok && c.Addr == sentinel {
			return out
		} else if ok {
			out = append(out, c)
		}
	}
}

// On the wire, a VIP bound with a lifetime is claimed once (the announcer's
// immediate announcement) and refreshing its lifetime claims nothing: no
// GARP, no NA, from the announcer or the kernel. A sentinel VIP announced
// after the refreshes marks the end (a veth delivers in order).
func TestKernelUpRefreshSilentOnWire(t *testing.T) {
	lm := newLifetimeManager(t, time.Hour)
	pc := listen(t, lm.ns)
	for _, a := range []netip.Addr{lv4, lv6} {
		if err := lm.up(a, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		lm.clk.Step(time.Second)
		for _, a := range []netip.Addr{lv4, lv6} {
			if err := lm.up(a, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	sentinel := netip.MustParseAddr("198.18.0.99")
	if err := lm.up(sentinel, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	want := []claim{{"arp request", lv4}, {"arp reply", lv4}, {"na", lv6}}
	if diff := cmp.Diff(want, claimsUntil(t, pc, sentinel), cmpAddr); diff != "" {
		t.Errorf("claims on the wire (-want +got):\n%s", diff)
	}
}

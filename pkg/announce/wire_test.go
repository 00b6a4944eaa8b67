package announce

import (
	"net"
	"net/netip"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

func TestGARPFrames(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	vip := netip.MustParseAddr("198.18.0.100")

	// garp is the part of a frame that makes it a gratuitous ARP.
	type garp struct {
		Dst, Src  net.HardwareAddr
		EtherType ethernet.EtherType
		Op        arp.Operation
		SenderHW  net.HardwareAddr
		SenderIP  netip.Addr
		TargetHW  net.HardwareAddr
		TargetIP  netip.Addr
	}
	want := []garp{
		{
			Dst: ethernet.Broadcast, Src: mac, EtherType: ethernet.EtherTypeARP,
			Op: arp.OperationRequest, SenderHW: mac, SenderIP: vip, TargetHW: zero, TargetIP: vip,
		},
		{
			Dst: ethernet.Broadcast, Src: mac, EtherType: ethernet.EtherTypeARP,
			Op: arp.OperationReply, SenderHW: mac, SenderIP: vip, TargetHW: mac, TargetIP: vip,
		},
	}
	for _, in := range []netip.Addr{vip, netip.MustParseAddr("::ffff:198.18.0.100")} {
		frames, err := garpFrames(mac, in)
		if err != nil {
			t.Fatalf("garpFrames(%v): %v", in, err)
		}
		var got []garp
		for _, b := range frames {
			var f ethernet.Frame
			if err := f.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			var p arp.Packet
			if err := p.UnmarshalBinary(f.Payload); err != nil {
				t.Fatal(err)
			}
			got = append(got, garp{
				Dst: f.Destination, Src: f.Source, EtherType: f.EtherType,
				Op: p.Operation, SenderHW: p.SenderHardwareAddr, SenderIP: p.SenderIP,
				TargetHW: p.TargetHardwareAddr, TargetIP: p.TargetIP,
			})
		}
		if diff := gocmp.Diff(want, got, cmpAddr); diff != "" {
			t.Errorf("garpFrames(%v) mismatch (-want +got):\n%s", in, diff)
		}
	}
}

func TestGARPFramesRejects(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	for _, a := range []netip.Addr{{}, netip.IPv4Unspecified(), netip.MustParseAddr("fd00:1ab::1")} {
		if _, err := garpFrames(mac, a); err == nil {
			t.Errorf("garpFrames(%v) = nil error, want error", a)
		}
	}
}

func TestUnsolicitedNA(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	vip := netip.MustParseAddr("fd00:1ab::100")
	na, err := unsolicitedNA(mac, vip)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ndp.MarshalMessage(na)
	if err != nil {
		t.Fatal(err)
	}
	// ICMPv6 type 136, then R|S|O flags: only Override (0x20).
	if b[0] != 136 || b[4] != 0x20 {
		t.Errorf("NA type %d flags %#x, want type 136 flags 0x20 (Override only)", b[0], b[4])
	}
	m, err := ndp.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: vip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	if diff := gocmp.Diff(ndp.Message(want), m, cmpAddr); diff != "" {
		t.Errorf("NA mismatch (-want +got):\n%s", diff)
	}
}

func TestUnsolicitedNARejects(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	for _, a := range []netip.Addr{
		{},
		netip.IPv6Unspecified(),
		netip.MustParseAddr("198.18.0.1"),
		netip.MustParseAddr("::ffff:198.18.0.1"),
		netip.MustParseAddr("fe80::1%eth0"),
	} {
		if _, err := unsolicitedNA(mac, a); err == nil {
			t.Errorf("unsolicitedNA(%v) = nil error, want error", a)
		}
	}
}

func TestNewConnRejects(t *testing.T) {
	noMAC := &net.Interface{Index: 1, Name: "lo", Flags: net.FlagUp | net.FlagLoopback}
	for name, open := range map[string]func(*net.Interface) (Conn, error){"NewARP": NewARP, "NewNDP": NewNDP} {
		for _, ifi := range []*net.Interface{nil, noMAC} {
			if c, err := open(ifi); err == nil {
				c.Close()
				t.Errorf("%s(%v) = nil error, want error", name, ifi)
			}
		}
	}
}

package announce

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
)

// arpConn sends gratuitous ARP on a packet socket.
type arpConn struct {
	pc     *packet.Conn
	mac    net.HardwareAddr
	ifname string
}

// NewARP returns a Conn that announces IPv4 addresses on ifi with
// gratuitous ARP. Each Announce sends two broadcast frames: an ARP request
// (RFC 5227 announcement: sender and target IP = addr, target MAC zero) and
// an ARP reply (sender and target IP = addr, sender and target MAC = ifi's).
// Linux neighbours with arp_accept=0 update an existing entry from either,
// and some devices only listen to one kind.
//
// ifi needs an Ethernet (6-byte) hardware address; it needs no IPv4 address
// of its own. The socket only sends: a filter drops everything it would
// receive.
func NewARP(ifi *net.Interface) (Conn, error) {
	if ifi == nil {
		return nil, errors.New("announce: ARP: nil interface")
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("announce: ARP on %s: interface has no Ethernet address", ifi.Name)
	}
	drop, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		return nil, fmt.Errorf("announce: ARP on %s: %w", ifi.Name, err)
	}
	pc, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: drop})
	if err != nil {
		return nil, fmt.Errorf("announce: ARP on %s: %w", ifi.Name, err)
	}
	return &arpConn{pc: pc, mac: ifi.HardwareAddr, ifname: ifi.Name}, nil
}

// Announce sends a gratuitous ARP request and reply for addr.
func (c *arpConn) Announce(addr netip.Addr) error {
	frames, err := garpFrames(c.mac, addr)
	if err != nil {
		return fmt.Errorf("announce: ARP on %s: %w", c.ifname, err)
	}
	var errs []error
	for _, f := range frames {
		if _, err := c.pc.WriteTo(f, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("announce: ARP for %s on %s: %w", addr, c.ifname, err)
	}
	return nil
}

func (c *arpConn) Close() error { return c.pc.Close() }

// garpFrames returns the Ethernet frames of one gratuitous ARP announcement
// of addr from mac: a request, then a reply.
func garpFrames(mac net.HardwareAddr, addr netip.Addr) ([][]byte, error) {
	addr = addr.Unmap()
	if !addr.Is4() || addr.IsUnspecified() {
		return nil, fmt.Errorf("not an IPv4 address: %s", addr)
	}
	zero := make(net.HardwareAddr, len(mac))
	req, err := arp.NewPacket(arp.OperationRequest, mac, addr, zero, addr)
	if err != nil {
		return nil, err
	}
	rep, err := arp.NewPacket(arp.OperationReply, mac, addr, mac, addr)
	if err != nil {
		return nil, err
	}
	var frames [][]byte
	for _, p := range []*arp.Packet{req, rep} {
		pb, err := p.MarshalBinary()
		if err != nil {
			return nil, err
		}
		f := &ethernet.Frame{
			Destination: ethernet.Broadcast,
			Source:      mac,
			EtherType:   ethernet.EtherTypeARP,
			Payload:     pb,
		}
		fb, err := f.MarshalBinary()
		if err != nil {
			return nil, err
		}
		frames = append(frames, fb)
	}
	return frames, nil
}

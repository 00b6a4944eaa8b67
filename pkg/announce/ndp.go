package announce

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// ndpConn sends unsolicited neighbour advertisements on an ICMPv6 socket.
type ndpConn struct {
	c      *ndp.Conn
	mac    net.HardwareAddr
	ifname string
}

// NewNDP returns a Conn that announces IPv6 addresses on ifi with
// unsolicited neighbour advertisements: to ff02::1, from ifi's link-local
// address, hop limit 255, Solicited clear, Override set, and a target
// link-layer address option with ifi's hardware address, so neighbours
// replace an existing entry (RFC 4861, section 7.2.6).
//
// ifi needs an Ethernet (6-byte) hardware address and an IPv6 link-local
// address that has finished duplicate address detection. The socket only
// sends: an ICMPv6 filter blocks everything it would receive.
func NewNDP(ifi *net.Interface) (Conn, error) {
	if ifi == nil {
		return nil, errors.New("announce: NDP: nil interface")
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("announce: NDP on %s: interface has no Ethernet address", ifi.Name)
	}
	// ndp scopes the link-local address by ifi.Name, which the net package
	// turns into an index through a process-wide name cache. A numeric zone
	// is used as the index directly: right after a rename, and in whatever
	// network namespace the socket lives in.
	scoped := *ifi
	scoped.Name = strconv.Itoa(ifi.Index)
	c, _, err := ndp.Listen(&scoped, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("announce: NDP on %s: %w", ifi.Name, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	if err := c.SetICMPFilter(&f); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("announce: NDP on %s: %w", ifi.Name, err)
	}
	return &ndpConn{c: c, mac: ifi.HardwareAddr, ifname: ifi.Name}, nil
}

// Announce sends an unsolicited neighbour advertisement for addr.
func (c *ndpConn) Announce(addr netip.Addr) error {
	na, err := unsolicitedNA(c.mac, addr)
	if err != nil {
		return fmt.Errorf("announce: NDP on %s: %w", c.ifname, err)
	}
	if err := c.c.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("announce: NDP for %s on %s: %w", addr, c.ifname, err)
	}
	return nil
}

func (c *ndpConn) Close() error { return c.c.Close() }

// unsolicitedNA returns the neighbour advertisement that announces addr at
// mac.
func unsolicitedNA(mac net.HardwareAddr, addr netip.Addr) (*ndp.NeighborAdvertisement, error) {
	if !addr.Is6() || addr.Is4In6() || addr.IsUnspecified() || addr.Zone() != "" {
		return nil, fmt.Errorf("not an unzoned IPv6 address: %s", addr)
	}
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: addr,
		Options: []ndp.Option{&ndp.LinkLayerAddress{
			Direction: ndp.Target,
			Addr:      mac,
		}},
	}, nil
}

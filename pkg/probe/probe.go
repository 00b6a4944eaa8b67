package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// Answered sends one request for addr on ifi and waits until deadline for
// a reply. It returns the hardware address that answered, or false when
// nobody did.
func Answered(ifi *net.Interface, addr netip.Addr, deadline time.Time) (net.HardwareAddr, bool, error) {
	if addr.Is4() {
		return arpProbe(ifi, addr, deadline)
	}
	return ndpProbe(ifi, addr, deadline)
}

func arpProbe(ifi *net.Interface, addr netip.Addr, deadline time.Time) (net.HardwareAddr, bool, error) {
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, false, fmt.Errorf("probe: ARP on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return nil, false, fmt.Errorf("probe: ARP on %s: %w", ifi.Name, err)
	}
	mac, err := c.Resolve(addr)
	return answer(mac, err, "ARP", ifi.Name, addr)
}

func ndpProbe(ifi *net.Interface, addr netip.Addr, deadline time.Time) (net.HardwareAddr, bool, error) {
	scoped := *ifi
	scoped.Name = strconv.Itoa(ifi.Index) // see announce.NewNDP
	c, _, err := ndp.Listen(&scoped, ndp.LinkLocal)
	if err != nil {
		return nil, false, fmt.Errorf("probe: NDP on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, false, fmt.Errorf("probe: NDP on %s: %w", ifi.Name, err)
	}
	if err := solicit(c, ifi.HardwareAddr, addr); err != nil {
		return nil, false, fmt.Errorf("probe: NDP for %s on %s: %w", addr, ifi.Name, err)
	}
	mac, err := readAdvert(c, addr)
	return answer(mac, err, "NDP", ifi.Name, addr)
}

// solicit sends a neighbour solicitation for addr to its solicited-node
// multicast group.
func solicit(c *ndp.Conn, mac net.HardwareAddr, addr netip.Addr) error {
	group, err := ndp.SolicitedNodeMulticast(addr)
	if err != nil {
		return err
	}
	ns := &ndp.NeighborSolicitation{TargetAddress: addr, Options: []ndp.Option{
		&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac},
	}}
	return c.WriteTo(ns, nil, group)
}

// readAdvert reads until a neighbour advertisement for addr arrives.
func readAdvert(c *ndp.Conn, addr netip.Addr) (net.HardwareAddr, error) {
	for {
		m, _, _, err := c.ReadFrom()
		if err != nil {
			return nil, err
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != addr {
			continue
		}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				return lla.Addr, nil
			}
		}
	}
}

// answer turns a read that ran into the deadline into "nobody answered".
func answer(mac net.HardwareAddr, err error, proto, ifname string, addr netip.Addr) (net.HardwareAddr, bool, error) {
	switch {
	case err == nil:
		return mac, true, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("probe: %s for %s on %s: %w", proto, addr, ifname, err)
}

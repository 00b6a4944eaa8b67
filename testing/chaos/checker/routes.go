//go:build linux

package checker

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// RouteSampler lists, over netlink, the host routes a BGP router has put in
// its FIB (its view of which nodes advertise each VIP) and feeds the
// checker.
type RouteSampler struct {
	h     *netlink.Handle
	nodes map[netip.Addr]string // next hop (a node's LAN address) -> node
}

// NewRouteSampler opens a netlink handle in the router's namespace; nodes
// maps each node's LAN addresses to its name.
func NewRouteSampler(ns string, nodes map[netip.Addr]string) (*RouteSampler, error) {
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	return &RouteSampler{h: h, nodes: nodes}, nil
}

// Close releases the netlink handle.
func (s *RouteSampler) Close() { s.h.Close() }

// Run samples every interval until ctx ends, feeding c.Routes.
func (s *RouteSampler) Run(ctx context.Context, c *Checker, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		routes, err := s.Routes()
		if err != nil {
			return err
		}
		c.Routes(time.Now(), routes)
	}
}

// Routes lists the router's host routes (/32, /128) and the nodes each
// goes via (a next hop that is no node is named by its address).
func (s *RouteSampler) Routes() (map[netip.Addr][]string, error) {
	out := map[netip.Addr][]string{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := s.h.RouteList(nil, fam)
		if err != nil {
			return nil, fmt.Errorf("router routes: %w", err)
		}
		for _, r := range rs {
			if r.Dst == nil {
				continue
			}
			ones, bits := r.Dst.Mask.Size()
			dst, ok := netip.AddrFromSlice(r.Dst.IP)
			if !ok || ones != bits {
				continue
			}
			out[dst.Unmap()] = s.hops(r)
		}
	}
	return out, nil
}

func (s *RouteSampler) hops(r netlink.Route) []string {
	gws := []netip.Addr{}
	if a, ok := netip.AddrFromSlice(r.Gw); ok {
		gws = append(gws, a.Unmap())
	}
	for _, nh := range r.MultiPath {
		if a, ok := netip.AddrFromSlice(nh.Gw); ok {
			gws = append(gws, a.Unmap())
		}
	}
	var out []string
	for _, gw := range gws {
		name, ok := s.nodes[gw]
		if !ok {
			name = gw.String()
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

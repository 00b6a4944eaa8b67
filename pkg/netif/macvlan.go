package netif

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AddMacvlan creates (or finds) a bridge-mode macvlan called name on parent
// with the given MAC, and sets it up. An existing link of that name with
// another parent or MAC is replaced.
func AddMacvlan(h *netlink.Handle, parent, name string, mac net.HardwareAddr) (*Link, error) {
	h = handle(h)
	p, err := h.LinkByName(parent)
	if err != nil {
		return nil, fmt.Errorf("netif: macvlan parent %q: %w", parent, err)
	}
	if cur, err := h.LinkByName(name); err == nil {
		a := cur.Attrs()
		if cur.Type() == "macvlan" && a.ParentIndex == p.Attrs().Index && a.HardwareAddr.String() == mac.String() {
			if err := h.LinkSetUp(cur); err != nil {
				return nil, fmt.Errorf("netif: set %s up: %w", name, err)
			}
			return &Link{h: h, link: cur}, nil
		}
		if err := h.LinkDel(cur); err != nil {
			return nil, fmt.Errorf("netif: replace %s: %w", name, err)
		}
	}
	mv := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: p.Attrs().Index, HardwareAddr: mac},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	}
	if err := h.LinkAdd(mv); err != nil {
		return nil, fmt.Errorf("netif: add macvlan %s on %s: %w", name, parent, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("netif: open new macvlan %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		_ = h.LinkDel(l)
		return nil, fmt.Errorf("netif: set %s up: %w", name, err)
	}
	return &Link{h: h, link: l}, nil
}

// DeleteLink removes the interface called name; a missing one is not an
// error.
func DeleteLink(h *netlink.Handle, name string) (deleted bool, err error) {
	h = handle(h)
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return false, nil
		}
		return false, fmt.Errorf("netif: find %s: %w", name, err)
	}
	if err := h.LinkDel(l); err != nil {
		return false, fmt.Errorf("netif: delete %s: %w", name, err)
	}
	return true, nil
}

// LinksWithPrefix names the interfaces whose name starts with prefix.
func LinksWithPrefix(h *netlink.Handle, prefix string) ([]string, error) {
	links, err := handle(h).LinkList()
	if err != nil {
		return nil, fmt.Errorf("netif: list links: %w", err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// DefaultRouteInterface names the interface of the IPv4 default route.
func DefaultRouteInterface(h *netlink.Handle) (string, error) {
	h = handle(h)
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("netif: list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		l, err := h.LinkByIndex(r.LinkIndex)
		if err != nil {
			continue
		}
		return l.Attrs().Name, nil
	}
	return "", errors.New("netif: no IPv4 default route")
}

// IsolateARP makes only the interface that owns an IPv4 address answer ARP
// for it, and makes it use that address as ARP source (arp_ignore=1,
// arp_announce=2 on ifname), so a parent never answers for its macvlans'
// addresses. It writes /proc/sys of the caller's network namespace.
func IsolateARP(ifname string) error {
	for k, v := range map[string]string{"arp_ignore": "1", "arp_announce": "2"} {
		p := "/proc/sys/net/ipv4/conf/" + ifname + "/" + k
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			return fmt.Errorf("netif: set %s: %w", p, err)
		}
	}
	return nil
}

// SetRPFilter sets reverse-path filtering on ifname: 0 off, 1 strict, 2
// loose.
func SetRPFilter(ifname string, mode int) error {
	if mode < 0 || mode > 2 {
		return fmt.Errorf("netif: rp_filter %d: want 0, 1 or 2", mode)
	}
	p := "/proc/sys/net/ipv4/conf/" + ifname + "/rp_filter"
	if err := os.WriteFile(p, []byte(strconv.Itoa(mode)), 0o644); err != nil {
		return fmt.Errorf("netif: set %s: %w", p, err)
	}
	return nil
}

// MacvlanOrAbsent fails when a link called name exists and is not a
// macvlan (a name a user chose must never replace a real interface).
func MacvlanOrAbsent(h *netlink.Handle, name string) error {
	l, err := handle(h).LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return fmt.Errorf("netif: find %s: %w", name, err)
	}
	if t := l.Type(); t != "macvlan" {
		return fmt.Errorf("netif: %s exists and is a %s, not a macvlan", name, t)
	}
	return nil
}

// SkipDAD turns IPv6 duplicate address detection off on the interface
// called name (net.ipv6.conf.<name>.accept_dad=0) and, if it is up, takes
// it down and up again and waits (until ctx ends) for its link-local
// address, which is then usable at once instead of after a second or two
// of DAD. Meant for a macvlan just made, before anything is bound on it.
// The sysctl and the address watch are those of the calling thread's
// network namespace, so h must be in it too (nil: the current one).
func SkipDAD(ctx context.Context, h *netlink.Handle, name string) error {
	p := "/proc/sys/net/ipv6/conf/" + name + "/accept_dad"
	if err := os.WriteFile(p, []byte("0"), 0o644); err != nil {
		return fmt.Errorf("netif: set %s: %w", p, err)
	}
	h = handle(h)
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netif: find %s: %w", name, err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return nil
	}
	updates, done := make(chan netlink.AddrUpdate, 16), make(chan struct{})
	defer close(done)
	if err := netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{}); err != nil {
		return fmt.Errorf("netif: watch addresses: %w", err)
	}
	if err := h.LinkSetDown(l); err != nil {
		return fmt.Errorf("netif: set %s down: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("netif: set %s up: %w", name, err)
	}
	for {
		ok, err := hasLinkLocal(h, l)
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netif: no link-local address on %s: %w", name, ctx.Err())
		case <-updates:
		}
	}
}

// hasLinkLocal tells whether l has a usable (not tentative) IPv6
// link-local address.
func hasLinkLocal(h *netlink.Handle, l netlink.Link) (bool, error) {
	addrs, err := h.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return false, fmt.Errorf("netif: addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE == 0 {
			return true, nil
		}
	}
	return false, nil
}

package netif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpRetries bounds how often an address dump is retried when the kernel
// reports that it changed while being read.
const dumpRetries = 3

// A Link is one network interface, in the network namespace of the netlink
// handle it was opened with.
//
// The name, index and hardware address are read once, by Open or OpenWith.
// If the interface is deleted and created again, open it again.
type Link struct {
	h    *netlink.Handle
	link netlink.Link
}

// Open opens the interface called name in the caller's network namespace.
func Open(name string) (*Link, error) {
	return OpenWith(nil, name)
}

// OpenWith opens the interface called name through h, and so in the network
// namespace h was created in (see netlink.NewHandleAt). A nil h means the
// caller's network namespace. The Link uses h for every later operation, so
// h must stay open as long as the Link is used.
func OpenWith(h *netlink.Handle, name string) (*Link, error) {
	h = handle(h)
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("netif: open %q: %w", name, err)
	}
	return &Link{h: h, link: l}, nil
}

// handle returns h, or for nil a handle on the caller's network namespace.
func handle(h *netlink.Handle) *netlink.Handle {
	if h == nil {
		// A zero Handle opens a netlink socket per request in the calling
		// thread's namespace, as netlink's package-level functions do.
		return &netlink.Handle{}
	}
	return h
}

// Name returns the interface name.
func (l *Link) Name() string { return l.link.Attrs().Name }

// Index returns the interface index.
func (l *Link) Index() int { return l.link.Attrs().Index }

// HardwareAddr returns the interface's link-layer address; it is empty for
// interfaces without one.
func (l *Link) HardwareAddr() net.HardwareAddr {
	return slices.Clone(l.link.Attrs().HardwareAddr)
}

// Bind adds a to the interface as a host prefix (/32 for IPv4, /128 for IPv6
// with IFA_F_NODAD), permanently. An IPv4-mapped IPv6 address is bound as
// IPv4.
//
// Bind is idempotent: if a is already on the interface, with any prefix
// length, Bind changes nothing and returns false and a nil error. It returns
// true only when it added the address. The one exception: a host prefix a
// that BindFor gave a lifetime is made permanent again (without a gap).
//
// The zero Addr, an unspecified, multicast, loopback or zoned address is
// rejected.
func (l *Link) Bind(a netip.Addr) (added bool, err error) {
	return l.BindFor(a, 0)
}

// ErrNotHostPrefix is returned (wrapped) by BindFor when the address is
// already on the interface with a shorter prefix, for example as the node's
// own address in its subnet: BindFor never puts a lifetime on that one.
var ErrNotHostPrefix = errors.New("address is on the interface with a shorter prefix than a host prefix")

// LapseSlack bounds how late the kernel removes an address after its
// lifetime ended. The kernel checks lifetimes from a delayed work item
// (IPv4 check_lifetime, IPv6 addrconf_verify) that runs at least
// ADDRCONF_TIMER_FUZZ_MAX (one second) after its previous run: a run just
// before the end of a lifetime, caused by any other address change, puts
// the removal up to a second late. See TestKernelLapseMeasure.
const LapseSlack = 1500 * time.Millisecond

// MaxLifetime is the longest finite lifetime BindFor accepts (the kernel
// reads 2^32-1 seconds as forever).
const MaxLifetime = (1<<32 - 2) * time.Second

// BindFor adds a to the interface as a host prefix, as Bind does, or
// refreshes it, with a kernel address lifetime: the kernel removes the
// address by itself once lifetime has passed (both valid_lft and
// preferred_lft; the kernel's own timer may act up to about a second late,
// see doc.go). A lifetime of 0 means permanent, as Bind.
//
// The kernel counts lifetimes in whole seconds: lifetime is rounded down,
// never up, so the address never outlives what the caller asked for. A
// lifetime between 0 and 1s, a negative one or one above MaxLifetime is an
// error.
//
// If the host prefix is already there, BindFor replaces its lifetime in
// place (RTM_NEWADDR with NLM_F_REPLACE): the address is never absent, not
// even for an instant, and the kernel sends nothing on the wire for it. It
// returns added=false then. If a is there with a shorter prefix, a
// permanent BindFor changes nothing (false, nil) and one with a lifetime
// changes nothing and returns an error wrapping ErrNotHostPrefix.
func (l *Link) BindFor(a netip.Addr, lifetime time.Duration) (added bool, err error) {
	return l.BindForIn(nil, a, lifetime)
}

// BindForIn is BindFor reading the interface's addresses from s, a
// Snapshot of this interface, instead of dumping them (nil: dumped now), and
// recording its own change in s. It binds or refreshes many addresses with
// one dump: s must be recent and the caller the only one changing the
// interface's host prefixes meanwhile, for it does not see anyone else's
// changes.
func (l *Link) BindForIn(s *Snapshot, a netip.Addr, lifetime time.Duration) (added bool, err error) {
	p, err := hostPrefix(a)
	if err != nil {
		return false, fmt.Errorf("netif: bind on %s: %w", l.Name(), err)
	}
	secs, err := lifetimeSeconds(lifetime)
	if err != nil {
		return false, fmt.Errorf("netif: bind %s on %s: %w", p.Addr(), l.Name(), err)
	}
	if s == nil {
		if s, err = l.Snapshot(); err != nil {
			return false, fmt.Errorf("netif: bind %s: %w", p.Addr(), err)
		}
	}
	cur, found := s.addrs[p.Addr()]
	switch {
	case found && cur.Bits() != p.Bits() && secs == 0:
		return false, nil
	case found && cur.Bits() != p.Bits():
		return false, fmt.Errorf("netif: bind %s on %s for %ds: %s: %w", p.Addr(), l.Name(), secs, cur, ErrNotHostPrefix)
	case found && secs == 0 && cur.permanent:
		return false, nil
	}
	if err := l.replaceHost(p, secs); err != nil {
		return false, fmt.Errorf("netif: bind %s on %s: %w", p, l.Name(), err)
	}
	s.addrs[p.Addr()] = present{Prefix: p, permanent: secs == 0}
	return !found, nil
}

// Put binds a on the interface as a permanent host prefix (/32 or /128,
// IPv6 with IFA_F_NODAD) with one netlink request and no read of the
// interface's addresses: for a caller that binds many addresses one at a
// time and need not know whether each was there (Bind tells, at the cost
// of a dump). A lifetime BindFor gave a is made permanent. Unlike Bind, Put
// adds the host prefix even when a is on the interface with a shorter
// prefix (the kernel keeps both; Unbind removes only the host prefix). The
// zero Addr, an unspecified, multicast, loopback or zoned address is
// rejected.
func (l *Link) Put(a netip.Addr) error {
	p, err := hostPrefix(a)
	if err != nil {
		return fmt.Errorf("netif: put on %s: %w", l.Name(), err)
	}
	if err := l.replaceHost(p, 0); err != nil {
		return fmt.Errorf("netif: put %s on %s: %w", p, l.Name(), err)
	}
	return nil
}

// replaceHost puts host prefix p on the interface with a lifetime of secs
// seconds (0: permanent), IPv6 without duplicate address detection.
// Replace creates the address if it is missing and otherwise changes its
// lifetime in place; without a lifetime it makes it permanent.
func (l *Link) replaceHost(p netip.Prefix, secs int) error {
	na := &netlink.Addr{IPNet: ipNet(p), ValidLft: secs, PreferedLft: secs}
	if p.Addr().Is6() {
		na.Flags = unix.IFA_F_NODAD
	}
	return l.h.AddrReplace(l.link, na)
}

// lifetimeSeconds converts a lifetime to the kernel's whole seconds,
// rounding down; 0 stays 0 (permanent).
func lifetimeSeconds(d time.Duration) (int, error) {
	switch {
	case d == 0:
		return 0, nil
	case d < time.Second:
		return 0, fmt.Errorf("lifetime %v: want 0 (permanent) or at least 1s", d)
	case d > MaxLifetime:
		return 0, fmt.Errorf("lifetime %v: longer than %v", d, MaxLifetime)
	}
	return int(d / time.Second), nil
}

// Unbind removes the host prefix for a (/32 or /128) from the interface.
// It never removes an address with another prefix length, such as the
// node's own address in its subnet.
//
// Unbind is idempotent: if the host prefix is not on the interface it
// returns false and a nil error. It returns true only when it removed it.
func (l *Link) Unbind(a netip.Addr) (removed bool, err error) {
	p, err := hostPrefix(a)
	if err != nil {
		return false, fmt.Errorf("netif: unbind on %s: %w", l.Name(), err)
	}
	if err := l.h.AddrDel(l.link, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ESRCH) {
			return false, nil
		}
		return false, fmt.Errorf("netif: unbind %s from %s: %w", p, l.Name(), err)
	}
	return true, nil
}

// Addrs returns the host-prefix (/32 and /128) addresses on the interface,
// sorted. These are the addresses Bind adds, together with any host-prefix
// address something else put there, except loopback addresses (::1 on lo),
// which are never VIPs.
func (l *Link) Addrs() ([]netip.Addr, error) {
	list, err := addrList(l.h, l.link)
	if err != nil {
		return nil, fmt.Errorf("netif: addresses of %s: %w", l.Name(), err)
	}
	var out []netip.Addr
	for _, na := range list {
		p, ok := prefixOf(na)
		if ok && p.Bits() == p.Addr().BitLen() && !p.Addr().IsLoopback() {
			out = append(out, p.Addr())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// present is one address found on the interface.
type present struct {
	netip.Prefix
	permanent bool // no lifetime
}

// A Snapshot is the addresses on one interface as one dump found them,
// for BindForIn.
type Snapshot struct {
	addrs map[netip.Addr]present // by address; the shortest prefix of each
}

// Snapshot dumps the addresses on the interface.
func (l *Link) Snapshot() (*Snapshot, error) {
	list, err := addrList(l.h, l.link)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", l.Name(), err)
	}
	s := &Snapshot{addrs: make(map[netip.Addr]present, len(list))}
	for _, na := range list {
		p, isIP := prefixOf(na)
		if !isIP {
			continue
		}
		// The same address with a shorter prefix (the node's own) wins
		// over a host prefix: it is the one that will not lapse.
		if cur, ok := s.addrs[p.Addr()]; !ok || p.Bits() < cur.Bits() {
			s.addrs[p.Addr()] = present{Prefix: p, permanent: na.Flags&unix.IFA_F_PERMANENT != 0}
		}
	}
	return s, nil
}

// Has reports whether the dump found a's host prefix (/32, /128).
func (s *Snapshot) Has(a netip.Addr) bool {
	p, ok := s.addrs[a.Unmap()]
	return ok && p.Bits() == p.Addr().BitLen()
}

// InterfaceFor returns the name of the interface a belongs on: the interface
// with an on-link prefix that contains a, looked up through h (nil means the
// caller's network namespace). An IPv4-mapped IPv6 address is looked up as
// IPv4.
//
// Only interfaces that are administratively up and not loopback count, and
// host prefixes (/32, /128) are ignored, because they are other VIPs rather
// than subnets. The longest matching prefix wins; between equally long
// prefixes the interface with the lowest index wins.
func InterfaceFor(h *netlink.Handle, a netip.Addr) (string, error) {
	p, err := hostPrefix(a)
	if err != nil {
		return "", fmt.Errorf("netif: interface for address: %w", err)
	}
	a = p.Addr()
	h = handle(h)

	links, err := h.LinkList()
	if err != nil {
		return "", fmt.Errorf("netif: interface for %s: list links: %w", a, err)
	}
	eligible := make(map[int]string, len(links))
	for _, l := range links {
		attrs := l.Attrs()
		if attrs.Flags&net.FlagUp != 0 && attrs.Flags&net.FlagLoopback == 0 {
			eligible[attrs.Index] = attrs.Name
		}
	}

	list, err := addrList(h, nil)
	if err != nil {
		return "", fmt.Errorf("netif: interface for %s: %w", a, err)
	}
	best, bestBits, bestIndex := "", -1, 0
	for _, na := range list {
		name, ok := eligible[na.LinkIndex]
		if !ok {
			continue
		}
		p, ok := prefixOf(na)
		if !ok || p.Bits() == p.Addr().BitLen() || !p.Contains(a) {
			continue
		}
		if p.Bits() > bestBits || (p.Bits() == bestBits && na.LinkIndex < bestIndex) {
			best, bestBits, bestIndex = name, p.Bits(), na.LinkIndex
		}
	}
	if best == "" {
		return "", fmt.Errorf("netif: no up, non-loopback interface has an on-link prefix containing %s", a)
	}
	return best, nil
}

// hostPrefix validates a as a VIP and returns its host prefix.
func hostPrefix(a netip.Addr) (netip.Prefix, error) {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return netip.Prefix{}, errors.New("invalid (zero) address")
	case a.IsUnspecified():
		return netip.Prefix{}, fmt.Errorf("unspecified address %s", a)
	case a.IsMulticast():
		return netip.Prefix{}, fmt.Errorf("multicast address %s", a)
	case a.IsLoopback():
		return netip.Prefix{}, fmt.Errorf("loopback address %s", a)
	case a.Zone() != "":
		return netip.Prefix{}, fmt.Errorf("zoned address %s", a)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// addrList dumps the addresses of link (all links for nil), retrying a few
// times when the dump was interrupted by a concurrent change.
func addrList(h *netlink.Handle, link netlink.Link) ([]netlink.Addr, error) {
	var err error
	for range dumpRetries {
		var list []netlink.Addr
		list, err = h.AddrList(link, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return list, err
		}
	}
	return nil, err
}

// prefixOf converts a netlink address to its address and prefix length.
func prefixOf(na netlink.Addr) (netip.Prefix, bool) {
	if na.IPNet == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(na.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := na.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

// ipNet converts a prefix to the form netlink takes.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}

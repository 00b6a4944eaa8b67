package allocator

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Range is an inclusive range of addresses of one family. A CIDR is the
// range from its first to its last address.
type Range struct {
	Start, End netip.Addr
}

// RangeOf returns the range of a prefix (its masked form).
func RangeOf(p netip.Prefix) Range {
	p = p.Masked()
	lo := u128From(p.Addr())
	f := FamilyOf(p.Addr())
	return Range{Start: p.Addr(), End: lo.or(hostMask(f, p.Bits())).addr(f)}
}

// Family returns the range's family (that of Start).
func (r Range) Family() Family { return FamilyOf(r.Start) }

// Contains reports whether a lies in r (same family, Start <= a <= End).
// IPv4-mapped IPv6 addresses are not unmapped.
func (r Range) Contains(a netip.Addr) bool {
	return a.IsValid() && a.Is4() == r.Start.Is4() && r.Start.Compare(a) <= 0 && a.Compare(r.End) <= 0
}

// Prefix returns the range as a CIDR if it is exactly one.
func (r Range) Prefix() (netip.Prefix, bool) {
	if r.check() != nil {
		return netip.Prefix{}, false
	}
	s := toSpan(r)
	d := s.hi.sub(s.lo) // size-1
	if !d.and(s.lo).isZero() {
		return netip.Prefix{}, false // not aligned
	}
	if n, ok := d.next(); ok && !d.and(n).isZero() {
		return netip.Prefix{}, false // size not a power of two
	}
	return netip.PrefixFrom(r.Start, r.Start.BitLen()-d.onesCount()), true
}

// String returns the range as a CIDR if it is one, else as start-end. The
// parsers read it back.
func (r Range) String() string {
	if p, ok := r.Prefix(); ok {
		return p.String()
	}
	return r.Start.String() + "-" + r.End.String()
}

// Validate checks what ParseRange checks: valid addresses of one family,
// no zone, no IPv4-mapped IPv6 address, Start <= End.
func (r Range) Validate() error {
	if err := r.check(); err != nil {
		return &RangeError{Entry: r.String(), Err: err}
	}
	return nil
}

func (r Range) check() error {
	if err := checkAddr(r.Start); err != nil {
		return err
	}
	if err := checkAddr(r.End); err != nil {
		return err
	}
	if r.Start.Is4() != r.End.Is4() {
		return ErrMixedFamilies
	}
	if r.Start.Compare(r.End) > 0 {
		return ErrReversed
	}
	return nil
}

func checkAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("%w: invalid address", ErrSyntax)
	case a.Zone() != "":
		return ErrZone
	case a.Is4In6():
		return ErrMapped
	}
	return nil
}

// ParseRange parses one pool entry: a CIDR (192.168.10.0/24,
// fc00:f853:ccd:e799::/124) or a start-end range (192.168.9.1-192.168.9.5,
// fc00::1-fc00::ff). Spaces around the entry and around "-" are ignored.
// See the package documentation for what is rejected.
func ParseRange(entry string) (Range, error) {
	s := strings.TrimSpace(entry)
	fail := func(err error) (Range, error) { return Range{}, &RangeError{Entry: entry, Err: err} }
	if strings.Contains(s, "%") {
		return fail(ErrZone)
	}
	if start, end, ok := strings.Cut(s, "-"); ok {
		if strings.Contains(s, "/") {
			return fail(fmt.Errorf("%w: a range takes addresses, not CIDRs", ErrSyntax))
		}
		a, err := netip.ParseAddr(strings.TrimSpace(start))
		if err != nil {
			return fail(fmt.Errorf("%w: %v", ErrSyntax, err))
		}
		b, err := netip.ParseAddr(strings.TrimSpace(end))
		if err != nil {
			return fail(fmt.Errorf("%w: %v", ErrSyntax, err))
		}
		r := Range{Start: a, End: b}
		if err := r.check(); err != nil {
			return fail(err)
		}
		return r, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fail(fmt.Errorf("%w: %v", ErrSyntax, err))
		}
		if p.Addr().Is4In6() {
			return fail(ErrMapped)
		}
		if m := p.Masked(); m != p {
			return fail(fmt.Errorf("%w: did you mean %s (or %s/%d)?", ErrHostBits, m, p.Addr(), p.Addr().BitLen()))
		}
		return RangeOf(p), nil
	}
	return fail(fmt.Errorf("%w: want a CIDR (192.168.10.0/24) or a start-end range (192.168.9.1-192.168.9.5)", ErrSyntax))
}

// ParseRanges parses a pool's entries (MetalLB's IPAddressPool
// spec.addresses) with ParseRange. Entries may not overlap each other.
func ParseRanges(entries []string) ([]Range, error) {
	rs := make([]Range, 0, len(entries))
	for _, e := range entries {
		r, err := ParseRange(e)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	if err := checkOverlap(rs, entries); err != nil {
		return nil, err
	}
	return rs, nil
}

// ParseList parses a comma-separated list of ParseRange entries, such as
// kube-vip-cloud-provider's range-global value
// (192.168.0.210-192.168.0.219,192.168.0.230-192.168.0.239). Empty entries
// are skipped; "" is an empty list.
func ParseList(s string) ([]Range, error) {
	return ParseRanges(splitList(s))
}

// ParseHostCIDRs parses kube-vip-cloud-provider's cidr-* values: a
// comma-separated list of CIDRs (192.168.0.200/29,192.168.0.210/29) in
// which an IPv4 CIDR of /30 or shorter loses its network and broadcast
// address, as kube-vip-cloud-provider does. /31, /32 and IPv6 CIDRs keep
// every address. Unlike kube-vip-cloud-provider it rejects host bits and
// overlapping entries.
func ParseHostCIDRs(s string) ([]Range, error) {
	entries := splitList(s)
	rs := make([]Range, 0, len(entries))
	for _, e := range entries {
		if strings.Contains(e, "-") {
			return nil, &RangeError{Entry: e, Err: fmt.Errorf("%w: want a CIDR (192.168.10.0/24)", ErrSyntax)}
		}
		r, err := ParseRange(e)
		if err != nil {
			return nil, err
		}
		if r.Start.Is4() {
			if p, _ := r.Prefix(); p.Bits() <= 30 {
				r = Range{Start: r.Start.Next(), End: r.End.Prev()}
			}
		}
		rs = append(rs, r)
	}
	if err := checkOverlap(rs, entries); err != nil {
		return nil, err
	}
	return rs, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// checkOverlap reports the first pair of overlapping ranges. entries, if
// not nil, holds how each range was written.
func checkOverlap(rs []Range, entries []string) error {
	name := func(i int) string {
		if entries != nil {
			return entries[i]
		}
		return rs[i].String()
	}
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	spans := make([]span, len(rs))
	for i, r := range rs {
		spans[i] = toSpan(r)
	}
	slices.SortStableFunc(idx, func(i, j int) int {
		return cmp.Or(cmp.Compare(spans[i].fam, spans[j].fam), spans[i].lo.cmp(spans[j].lo))
	})
	reach := -1 // index of the range reaching furthest so far, in the current family
	for _, i := range idx {
		if reach >= 0 && spans[reach].fam == spans[i].fam && !spans[reach].hi.less(spans[i].lo) {
			first, second := min(reach, i), max(reach, i)
			return &RangeError{Entry: name(second), Err: fmt.Errorf("%w: %s", ErrOverlap, name(first))}
		}
		if reach < 0 || spans[reach].fam != spans[i].fam || spans[reach].hi.less(spans[i].hi) {
			reach = i
		}
	}
	return nil
}

// span is a validated Range as integers.
type span struct {
	fam    Family
	lo, hi u128
}

func toSpan(r Range) span {
	return span{fam: r.Family(), lo: u128From(r.Start), hi: u128From(r.End)}
}

func (s span) contains(f Family, u u128) bool {
	return s.fam == f && !u.less(s.lo) && !s.hi.less(u)
}

func (s span) rng() Range { return Range{Start: s.lo.addr(s.fam), End: s.hi.addr(s.fam)} }

// hostMask returns the host part mask of a prefix of the given length.
func hostMask(f Family, bits int) u128 {
	total := 128
	if f == IPv4 {
		total = 32
	}
	n := total - bits // host bits
	switch {
	case n <= 0:
		return u128{}
	case n >= 128:
		return maxU128()
	case n >= 64:
		return u128{1<<(n-64) - 1, ^uint64(0)}
	}
	return u128{0, 1<<n - 1}
}

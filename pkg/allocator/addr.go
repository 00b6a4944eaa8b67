package allocator

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
)

// Family is an IP family, spelled as Kubernetes spells spec.ipFamilies, so
// allocator.Family(corev1.IPv4Protocol) is IPv4.
type Family string

// The families.
const (
	IPv4 Family = "IPv4"
	IPv6 Family = "IPv6"
)

func (f Family) valid() bool { return f == IPv4 || f == IPv6 }

// FamilyOf returns the family of a valid address (an IPv4-mapped IPv6
// address is IPv6; unmap it first if that is not what you want).
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// u128 is an address (or a count) as a 128-bit unsigned integer. IPv4
// addresses are 0..2^32-1.
type u128 struct{ hi, lo uint64 }

// maxU128 returns 2^128-1.
func maxU128() u128 { return u128{math.MaxUint64, math.MaxUint64} }

func u128From(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(f Family) netip.Addr {
	if f == IPv4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u u128) cmp(v u128) int {
	switch {
	case u.hi < v.hi:
		return -1
	case u.hi > v.hi:
		return 1
	case u.lo < v.lo:
		return -1
	case u.lo > v.lo:
		return 1
	}
	return 0
}

func (u u128) less(v u128) bool { return u.cmp(v) < 0 }

// add returns u+v and whether it overflowed.
func (u u128) add(v u128) (u128, bool) {
	lo, c := bits.Add64(u.lo, v.lo, 0)
	hi, c := bits.Add64(u.hi, v.hi, c)
	return u128{hi, lo}, c != 0
}

// addSat returns u+v, saturated at 2^128-1.
func (u u128) addSat(v u128) u128 {
	s, o := u.add(v)
	if o {
		return maxU128()
	}
	return s
}

// sub returns u-v (wrapping).
func (u u128) sub(v u128) u128 {
	lo, b := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, b)
	return u128{hi, lo}
}

// subSat returns u-v, or 0 if v > u.
func (u u128) subSat(v u128) u128 {
	if u.less(v) {
		return u128{}
	}
	return u.sub(v)
}

// next returns u+1 and false if that overflows.
func (u u128) next() (u128, bool) {
	s, o := u.add(u128{0, 1})
	return s, !o
}

func (u u128) prev() u128 { return u.sub(u128{0, 1}) }

func (u u128) and(v u128) u128 { return u128{u.hi & v.hi, u.lo & v.lo} }

func (u u128) isZero() bool { return u.hi == 0 && u.lo == 0 }

func (u u128) onesCount() int { return bits.OnesCount64(u.hi) + bits.OnesCount64(u.lo) }

// sat64 saturates u to a uint64.
func (u u128) sat64() uint64 {
	if u.hi != 0 {
		return math.MaxUint64
	}
	return u.lo
}

// width returns hi-lo+1, the number of addresses in [lo, hi], saturated.
func width(lo, hi u128) u128 {
	d := hi.sub(lo)
	if s, ok := d.next(); ok {
		return s
	}
	return maxU128()
}

// buggy reports whether an IPv4 address ends in .0 or .255: MetalLB's
// AvoidBuggyIPs skips every such address, not only a network's first and
// last.
func buggy(u u128) bool { b := u.lo & 0xff; return b == 0 || b == 0xff }

// skipBuggy returns the first IPv4 address >= u that does not end in .0 or
// .255.
func skipBuggy(u u128) u128 {
	switch u.lo & 0xff {
	case 0:
		u.lo++
	case 0xff:
		u.lo += 2
	}
	return u
}

// countBuggy returns how many IPv4 addresses in [lo, hi] end in .0 or .255.
func countBuggy(lo, hi uint64) uint64 {
	return countMod(lo, hi, 0) + countMod(lo, hi, 0xff)
}

// countMod returns how many x in [lo, hi] have x%256 == r.
func countMod(lo, hi, r uint64) uint64 {
	le := func(n uint64) uint64 { // how many x in [0, n] have x%256 == r
		if n < r {
			return 0
		}
		return (n-r)/256 + 1
	}
	n := le(hi)
	if lo > 0 {
		n -= le(lo - 1)
	}
	return n
}

func (u u128) or(v u128) u128 { return u128{u.hi | v.hi, u.lo | v.lo} }

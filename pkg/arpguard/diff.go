package arpguard

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// errBadAddr is wrapped by the error for an address that cannot be a VIP.
var errBadAddr = errors.New("not a unicast address")

// wanted returns the IPv4 addresses of addrs (IPv4-mapped IPv6 addresses
// as IPv4), sorted and without duplicates. Other IPv6 addresses are
// dropped: the kernel never answers neighbour solicitations for them on
// another interface (see doc.go). The zero Addr, an unspecified or a
// multicast address is an error.
func wanted(addrs []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			return nil, fmt.Errorf("arpguard: %q: %w", a, errBadAddr)
		}
		if a.Is4() {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// diff returns the addresses to add to have and to delete from it to get
// want. Both inputs must be sorted and without duplicates (as wanted
// returns them); so are both outputs.
func diff(have, want []netip.Addr) (add, del []netip.Addr) {
	i, j := 0, 0
	for i < len(have) || j < len(want) {
		switch {
		case j == len(want) || (i < len(have) && have[i].Less(want[j])):
			del = append(del, have[i])
			i++
		case i == len(have) || want[j].Less(have[i]):
			add = append(add, want[j])
			j++
		default:
			i++
			j++
		}
	}
	return add, del
}

package agent

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The address index finds exactly the states using an address, through
// every change of what they claim or lease, and forgets an address no
// state uses.
func TestAddrIndex(t *testing.T) {
	ip := netip.MustParseAddr
	x := newIndex((*serviceState).used)
	a, b := &serviceState{key: "a"}, &serviceState{key: "b"}
	on := func(addr string) []string {
		var keys []string
		for st := range x.on(ip(addr)) {
			keys = append(keys, st.key)
		}
		slices.Sort(keys)
		return keys
	}
	for _, step := range []struct {
		name   string
		change func()
		want   map[string][]string // address → keys using it
		keys   int                 // addresses indexed
	}{
		{"a claims two", func() { x.update(a, func() { a.addrs = []netip.Addr{ip("10.0.0.1"), ip("10.0.0.2")} }) },
			map[string][]string{"10.0.0.1": {"a"}, "10.0.0.2": {"a"}}, 2},
		{"b shares one", func() { x.update(b, func() { b.addrs = []netip.Addr{ip("10.0.0.2")} }) },
			map[string][]string{"10.0.0.1": {"a"}, "10.0.0.2": {"a", "b"}}, 2},
		{"a leases what it claims", func() { x.update(a, func() { a.dhcpAddrs = []netip.Addr{ip("10.0.0.1")} }) },
			map[string][]string{"10.0.0.1": {"a"}, "10.0.0.2": {"a", "b"}}, 2},
		{"a moves", func() { x.update(a, func() { a.addrs, a.dhcpAddrs = []netip.Addr{ip("10.0.0.3")}, nil }) },
			map[string][]string{"10.0.0.1": nil, "10.0.0.2": {"b"}, "10.0.0.3": {"a"}}, 2},
		{"both drop everything", func() {
			x.update(a, func() { a.addrs = nil })
			x.update(b, func() { b.addrs = nil })
		}, map[string][]string{"10.0.0.2": nil, "10.0.0.3": nil}, 0},
	} {
		step.change()
		got := map[string][]string{}
		for addr := range step.want {
			got[addr] = on(addr)
		}
		if diff := cmp.Diff(step.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", step.name, diff)
		}
		if len(x.m) != step.keys {
			t.Errorf("%s: %d addresses indexed, want %d", step.name, len(x.m), step.keys)
		}
	}
}

package arpguard

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var cmpAddr = cmpopts.EquateComparable(netip.Addr{})

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestWanted(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []netip.Addr
		want []netip.Addr
		err  error
	}{
		{name: "none", in: nil, want: nil},
		{name: "sorted and deduplicated",
			in:   addrs("198.18.0.9", "198.18.0.1", "198.18.0.9"),
			want: addrs("198.18.0.1", "198.18.0.9")},
		{name: "mapped is IPv4",
			in:   addrs("::ffff:198.18.0.1", "198.18.0.1"),
			want: addrs("198.18.0.1")},
		{name: "IPv6 ignored",
			in:   addrs("fd00:1ab::200", "198.18.0.2"),
			want: addrs("198.18.0.2")},
		{name: "zero", in: []netip.Addr{{}}, err: errBadAddr},
		{name: "unspecified", in: addrs("198.18.0.1", "0.0.0.0"), err: errBadAddr},
		{name: "multicast", in: addrs("224.0.0.1"), err: errBadAddr},
		{name: "IPv6 unspecified", in: addrs("::"), err: errBadAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := wanted(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("wanted(%v) error = %v, want %v", tc.in, err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got, cmpAddr, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("wanted(%v) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name      string
		have, in  []netip.Addr
		add, dele []netip.Addr
	}{
		{name: "both empty"},
		{name: "from empty", in: addrs("198.18.0.1", "198.18.0.2"), add: addrs("198.18.0.1", "198.18.0.2")},
		{name: "to empty", have: addrs("198.18.0.1", "198.18.0.2"), dele: addrs("198.18.0.1", "198.18.0.2")},
		{name: "same", have: addrs("198.18.0.1", "198.18.0.2"), in: addrs("198.18.0.1", "198.18.0.2")},
		{name: "interleaved",
			have: addrs("198.18.0.1", "198.18.0.3", "198.18.0.5"),
			in:   addrs("198.18.0.2", "198.18.0.3", "198.18.0.6"),
			add:  addrs("198.18.0.2", "198.18.0.6"),
			dele: addrs("198.18.0.1", "198.18.0.5")},
		{name: "all before", have: addrs("198.18.0.8", "198.18.0.9"), in: addrs("198.18.0.1"),
			add: addrs("198.18.0.1"), dele: addrs("198.18.0.8", "198.18.0.9")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			add, del := diff(tc.have, tc.in)
			if d := cmp.Diff(tc.add, add, cmpAddr, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("add (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.dele, del, cmpAddr, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("delete (-want +got):\n%s", d)
			}
		})
	}
}

// FuzzDiff checks that applying diff's answer to have gives want, for any
// two sets of addresses.
func FuzzDiff(f *testing.F) {
	f.Add([]byte{1, 3, 5}, []byte{2, 3, 6})
	f.Add([]byte{}, []byte{7})
	f.Fuzz(func(t *testing.T, h, w []byte) {
		have, _ := wanted(lastOctets(h))
		want, _ := wanted(lastOctets(w))
		add, del := diff(have, want)
		got := slices.DeleteFunc(slices.Clone(have), func(a netip.Addr) bool { return slices.Contains(del, a) })
		got = append(got, add...)
		slices.SortFunc(got, netip.Addr.Compare)
		if d := cmp.Diff(want, got, cmpAddr, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("have %v, add %v, delete %v (-want +got):\n%s", have, add, del, d)
		}
		for _, a := range add {
			if slices.Contains(have, a) {
				t.Errorf("adds %v, which is there already", a)
			}
		}
		for _, a := range del {
			if !slices.Contains(have, a) {
				t.Errorf("deletes %v, which is not there", a)
			}
		}
	})
}

func lastOctets(bs []byte) []netip.Addr {
	out := make([]netip.Addr, 0, len(bs))
	for _, b := range bs {
		out = append(out, netip.AddrFrom4([4]byte{198, 18, 0, b}))
	}
	return out
}

package allocator_test

import (
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

func mustRanges(t testing.TB, entries ...string) []allocator.Range {
	t.Helper()
	rs, err := allocator.ParseRanges(entries)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestPoolSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ranges []string
		avoid  bool
		v4, v6 uint64
	}{
		{name: "v4 /24", ranges: []string{"192.168.10.0/24"}, v4: 256},
		{name: "v4 /24 avoiding .0 .255", ranges: []string{"192.168.10.0/24"}, avoid: true, v4: 254},
		{name: "v4 /16 avoiding", ranges: []string{"10.1.0.0/16"}, avoid: true, v4: 65536 - 512},
		{name: "across a /24 boundary avoiding", ranges: []string{"10.0.0.250-10.0.1.5"}, avoid: true, v4: 10},
		{name: "only buggy", ranges: []string{"10.0.0.255-10.0.1.0"}, avoid: true, v4: 0},
		{name: "v4 /0", ranges: []string{"0.0.0.0/0"}, v4: 1 << 32},
		{name: "avoid does not touch IPv6", ranges: []string{"fd00::/120"}, avoid: true, v6: 256},
		{name: "v6 /124 and a range", ranges: []string{"fc00:f853:ccd:e799::/124", "fd00::1-fd00::3"}, v6: 19},
		{name: "v6 /65", ranges: []string{"fd00::/65"}, v6: 1 << 63},
		{name: "v6 /64 saturates", ranges: []string{"fd00::/64"}, v6: math.MaxUint64},
		{name: "v6 /0 saturates", ranges: []string{"::/0"}, v6: math.MaxUint64},
		{name: "mixed", ranges: []string{"10.0.0.0/30", "fd00::/126", "10.0.1.0/31"}, v4: 6, v6: 4},
		{name: "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := allocator.Pool{Name: "p", Ranges: mustRanges(t, tc.ranges...), AvoidBuggyIPs: tc.avoid}
			v4, v6 := p.Size()
			if v4 != tc.v4 || v6 != tc.v6 {
				t.Errorf("Size() = %d, %d; want %d, %d", v4, v6, tc.v4, tc.v6)
			}
		})
	}
}

func TestPoolValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		pool allocator.Pool
		err  error
		msg  string
	}{
		{name: "ok", pool: allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("10.0.0.0", "10.0.0.9")}}},
		{name: "no name", pool: allocator.Pool{}, err: allocator.ErrInvalidPool, msg: "invalid pool: no name"},
		{
			name: "reversed",
			pool: allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("10.0.0.9", "10.0.0.0")}},
			err:  allocator.ErrReversed,
			msg:  `invalid pool "p": invalid address range "10.0.0.9-10.0.0.0": start is after end`,
		},
		{
			name: "mixed",
			pool: allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("10.0.0.0", "fd00::")}},
			err:  allocator.ErrMixedFamilies,
		},
		{
			name: "zero range",
			pool: allocator.Pool{Name: "p", Ranges: []allocator.Range{{}}},
			err:  allocator.ErrSyntax,
		},
		{
			name: "overlap",
			pool: allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("10.0.0.0", "10.0.0.9"), rng("10.0.0.9", "10.0.0.20")}},
			err:  allocator.ErrOverlap,
			msg:  `invalid pool "p": invalid address range "10.0.0.9-10.0.0.20": overlaps another range of the pool: 10.0.0.0-10.0.0.9`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.pool.Validate()
			if tc.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.err) || !errors.Is(err, allocator.ErrInvalidPool) {
				t.Fatalf("Validate() = %v, want %v and ErrInvalidPool", err, tc.err)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("Validate() = %q, want %q", err, tc.msg)
			}
		})
	}
}

func TestOverlaps(t *testing.T) {
	pools := []allocator.Pool{
		{Name: "a", Ranges: mustRanges(t, "10.0.0.0/24", "fd00::/120")},
		{Name: "b", Ranges: mustRanges(t, "10.0.0.100-10.0.1.10", "10.0.2.0/24")},
		{Name: "c", Ranges: mustRanges(t, "10.0.0.200/32", "fd00::80-fd00::1:0", "10.0.3.0/24")},
		{Name: "d", Ranges: mustRanges(t, "10.0.4.0/24")},
		{Name: "e", Ranges: mustRanges(t, "10.0.0.0/8")},
	}
	want := []allocator.Overlap{
		{Pools: [2]string{"a", "b"}, Range: rng("10.0.0.100", "10.0.0.255")},
		{Pools: [2]string{"a", "c"}, Range: rng("10.0.0.200", "10.0.0.200")},
		{Pools: [2]string{"a", "c"}, Range: rng("fd00::80", "fd00::ff")},
		{Pools: [2]string{"a", "e"}, Range: rng("10.0.0.0", "10.0.0.255")},
		{Pools: [2]string{"b", "c"}, Range: rng("10.0.0.200", "10.0.0.200")},
		{Pools: [2]string{"b", "e"}, Range: rng("10.0.0.100", "10.0.1.10")},
		{Pools: [2]string{"b", "e"}, Range: rng("10.0.2.0", "10.0.2.255")},
		{Pools: [2]string{"c", "e"}, Range: rng("10.0.0.200", "10.0.0.200")},
		{Pools: [2]string{"c", "e"}, Range: rng("10.0.3.0", "10.0.3.255")},
		{Pools: [2]string{"d", "e"}, Range: rng("10.0.4.0", "10.0.4.255")},
	}
	if diff := cmp.Diff(want, allocator.Overlaps(pools), cmpNetip); diff != "" {
		t.Errorf("Overlaps (-want +got):\n%s", diff)
	}
	if got := allocator.Overlaps(pools[:1]); len(got) != 0 {
		t.Errorf("one pool: Overlaps = %v", got)
	}
}

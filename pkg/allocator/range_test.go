package allocator_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

var cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func rng(start, end string) allocator.Range {
	return allocator.Range{Start: netip.MustParseAddr(start), End: netip.MustParseAddr(end)}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    allocator.Range
		wantStr string // String(); "" means in
		err     error  // besides ErrInvalidRange
		msg     string // substring of the error
	}{
		{in: "192.168.10.0/24", want: rng("192.168.10.0", "192.168.10.255")},
		{in: "192.168.10.7/32", want: rng("192.168.10.7", "192.168.10.7")},
		{in: "0.0.0.0/0", want: rng("0.0.0.0", "255.255.255.255")},
		{in: " 10.0.0.0/8 ", want: rng("10.0.0.0", "10.255.255.255"), wantStr: "10.0.0.0/8"},
		{in: "fc00:f853:ccd:e799::/124", want: rng("fc00:f853:ccd:e799::", "fc00:f853:ccd:e799::f")},
		{in: "fd00::/64", want: rng("fd00::", "fd00::ffff:ffff:ffff:ffff")},
		{in: "::/0", want: rng("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
		{in: "192.168.9.1-192.168.9.5", want: rng("192.168.9.1", "192.168.9.5")},
		{in: "192.168.9.1 - 192.168.9.5", want: rng("192.168.9.1", "192.168.9.5"), wantStr: "192.168.9.1-192.168.9.5"},
		{in: "192.168.9.0-192.168.9.255", want: rng("192.168.9.0", "192.168.9.255"), wantStr: "192.168.9.0/24"},
		{in: "192.168.9.5-192.168.9.5", want: rng("192.168.9.5", "192.168.9.5"), wantStr: "192.168.9.5/32"},
		{in: "fc00::1-fc00::ff", want: rng("fc00::1", "fc00::ff")},

		{in: "", err: allocator.ErrSyntax, msg: "want a CIDR"},
		{in: "192.168.1.1", err: allocator.ErrSyntax, msg: "want a CIDR"},
		{in: "192.168.1.0/33", err: allocator.ErrSyntax},
		{in: "192.168.1/24", err: allocator.ErrSyntax},
		{in: "192.168.1.1-", err: allocator.ErrSyntax},
		{in: "192.168.1.1-192.168.1.2-192.168.1.3", err: allocator.ErrSyntax},
		{in: "192.168.1.0/24-192.168.2.0/24", err: allocator.ErrSyntax, msg: "not CIDRs"},
		{in: "192.168.1.1/24", err: allocator.ErrHostBits, msg: "did you mean 192.168.1.0/24 (or 192.168.1.1/32)?"},
		{in: "fd00::1/64", err: allocator.ErrHostBits, msg: "fd00::/64"},
		{in: "192.168.1.9-192.168.1.1", err: allocator.ErrReversed},
		{in: "192.168.1.1-fd00::1", err: allocator.ErrMixedFamilies},
		{in: "fe80::1%eth0-fe80::2%eth0", err: allocator.ErrZone},
		{in: "fe80::%eth0/64", err: allocator.ErrZone},
		{in: "::ffff:192.168.1.0/120", err: allocator.ErrMapped},
		{in: "::ffff:192.168.1.1-::ffff:192.168.1.9", err: allocator.ErrMapped},
		{in: "192.168.1.1-::ffff:192.168.1.9", err: allocator.ErrMapped},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := allocator.ParseRange(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !errors.Is(err, allocator.ErrInvalidRange) {
					t.Fatalf("ParseRange(%q) = %v, %v; want %v", tc.in, got, err, tc.err)
				}
				var re *allocator.RangeError
				if !errors.As(err, &re) || re.Entry != tc.in {
					t.Errorf("error %v: want a *RangeError for %q", err, tc.in)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("error %q does not contain %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRange(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpNetip); diff != "" {
				t.Errorf("ParseRange(%q) (-want +got):\n%s", tc.in, diff)
			}
			wantStr := tc.wantStr
			if wantStr == "" {
				wantStr = tc.in
			}
			if s := got.String(); s != wantStr {
				t.Errorf("String() = %q, want %q", s, wantStr)
			}
		})
	}
}

func TestParseRangeErrorMessage(t *testing.T) {
	_, err := allocator.ParseRange("192.168.1.1/24")
	want := `invalid address range "192.168.1.1/24": host bits set: did you mean 192.168.1.0/24 (or 192.168.1.1/32)?`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestParseRangesOverlap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []string
		want    []allocator.Range
		overlap string // the error message, "" for none
	}{
		{
			name: "disjoint and adjacent",
			in:   []string{"192.168.10.0/25", "192.168.10.128/25", "fd00::/126", "192.168.9.1-192.168.9.5"},
			want: []allocator.Range{
				rng("192.168.10.0", "192.168.10.127"), rng("192.168.10.128", "192.168.10.255"),
				rng("fd00::", "fd00::3"), rng("192.168.9.1", "192.168.9.5"),
			},
		},
		{name: "empty", in: nil, want: []allocator.Range{}},
		{
			name:    "cidr contains range",
			in:      []string{"192.168.10.0/24", "192.168.10.5-192.168.10.9"},
			overlap: `invalid address range "192.168.10.5-192.168.10.9": overlaps another range of the pool: 192.168.10.0/24`,
		},
		{
			name:    "later entry first in address order",
			in:      []string{"10.0.0.5-10.0.0.9", "10.0.0.0-10.0.0.5"},
			overlap: `invalid address range "10.0.0.0-10.0.0.5": overlaps another range of the pool: 10.0.0.5-10.0.0.9`,
		},
		{
			name:    "overlap behind a long range",
			in:      []string{"10.0.0.0-10.0.0.100", "10.0.0.10-10.0.0.11", "10.0.0.50/32"},
			overlap: `invalid address range "10.0.0.10-10.0.0.11": overlaps another range of the pool: 10.0.0.0-10.0.0.100`,
		},
		{
			name:    "ipv6",
			in:      []string{"fd00::/120", "fd00::ff-fd00::1ff"},
			overlap: `overlaps another range of the pool: fd00::/120`,
		},
		{
			name: "same numbers, different families",
			in:   []string{"0.0.0.0/24", "::/120"},
			want: []allocator.Range{rng("0.0.0.0", "0.0.0.255"), rng("::", "::ff")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := allocator.ParseRanges(tc.in)
			if tc.overlap != "" {
				if !errors.Is(err, allocator.ErrOverlap) || !strings.Contains(err.Error(), tc.overlap) {
					t.Fatalf("ParseRanges = %v, %v; want an ErrOverlap containing %q", got, err, tc.overlap)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpNetip); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []allocator.Range
		err  error
	}{
		{in: "192.168.0.200/29,192.168.0.216/29", want: []allocator.Range{
			rng("192.168.0.200", "192.168.0.207"), rng("192.168.0.216", "192.168.0.223"),
		}},
		{in: "192.168.0.210-192.168.0.219, 192.168.0.230-192.168.0.239,", want: []allocator.Range{
			rng("192.168.0.210", "192.168.0.219"), rng("192.168.0.230", "192.168.0.239"),
		}},
		{in: "fd00::10-fd00::20,192.168.0.1/32", want: []allocator.Range{
			rng("fd00::10", "fd00::20"), rng("192.168.0.1", "192.168.0.1"),
		}},
		{in: "", want: []allocator.Range{}},
		{in: " , ", want: []allocator.Range{}},
		{in: "192.168.0.200/29,192.168.0.210/29", err: allocator.ErrHostBits},
		{in: "192.168.0.200/29,192.168.0.204/30", err: allocator.ErrOverlap},
		{in: "192.168.0.200/29;192.168.0.216/29", err: allocator.ErrSyntax},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := allocator.ParseList(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseList(%q) = %v, %v; want %v", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpNetip); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseHostCIDRs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []allocator.Range
		err  error
	}{
		// kube-vip-cloud-provider: 192.168.0.200/29 gives .201-.206.
		{in: "192.168.0.200/29,192.168.0.216/30", want: []allocator.Range{
			rng("192.168.0.201", "192.168.0.206"), rng("192.168.0.217", "192.168.0.218"),
		}},
		{in: "10.0.0.0/31,10.0.0.9/32", want: []allocator.Range{
			rng("10.0.0.0", "10.0.0.1"), rng("10.0.0.9", "10.0.0.9"),
		}},
		{in: "fd00::/126", want: []allocator.Range{rng("fd00::", "fd00::3")}},
		{in: "10.0.0.1-10.0.0.5", err: allocator.ErrSyntax},
		{in: "10.0.0.1/24", err: allocator.ErrHostBits},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := allocator.ParseHostCIDRs(tc.in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseHostCIDRs(%q) = %v, %v; want %v", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpNetip); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRangeValidateAndContains(t *testing.T) {
	if err := (allocator.Range{}).Validate(); !errors.Is(err, allocator.ErrSyntax) {
		t.Errorf("zero Range: Validate() = %v, want ErrSyntax", err)
	}
	r := rng("10.0.0.5", "10.0.0.9")
	for _, tc := range []struct {
		a    string
		want bool
	}{
		{"10.0.0.4", false}, {"10.0.0.5", true}, {"10.0.0.9", true}, {"10.0.0.10", false},
		{"::ffff:10.0.0.6", false}, {"::a00:6", false},
	} {
		if got := r.Contains(netip.MustParseAddr(tc.a)); got != tc.want {
			t.Errorf("%v.Contains(%s) = %v, want %v", r, tc.a, got, tc.want)
		}
	}
}

package netif

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
)

func TestHostPrefix(t *testing.T) {
	tests := []struct {
		name    string
		in      netip.Addr
		want    netip.Prefix
		wantErr bool
	}{
		{name: "ipv4", in: netip.MustParseAddr("198.18.0.10"), want: netip.MustParsePrefix("198.18.0.10/32")},
		{name: "ipv6", in: netip.MustParseAddr("fd00:1ab::10"), want: netip.MustParsePrefix("fd00:1ab::10/128")},
		{name: "ipv4-mapped is unmapped", in: netip.MustParseAddr("::ffff:198.18.0.10"), want: netip.MustParsePrefix("198.18.0.10/32")},
		{name: "zero", in: netip.Addr{}, wantErr: true},
		{name: "unspecified v4", in: netip.IPv4Unspecified(), wantErr: true},
		{name: "unspecified v6", in: netip.IPv6Unspecified(), wantErr: true},
		{name: "mapped unspecified", in: netip.MustParseAddr("::ffff:0.0.0.0"), wantErr: true},
		{name: "multicast v4", in: netip.MustParseAddr("224.0.0.18"), wantErr: true},
		{name: "multicast v6", in: netip.MustParseAddr("ff02::1"), wantErr: true},
		{name: "loopback v4", in: netip.MustParseAddr("127.0.0.5"), wantErr: true},
		{name: "loopback v6", in: netip.IPv6Loopback(), wantErr: true},
		{name: "zoned", in: netip.MustParseAddr("fe80::1%eth0"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hostPrefix(tt.in)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("hostPrefix(%v) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("hostPrefix(%v) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestPrefixOf(t *testing.T) {
	tests := []struct {
		name   string
		in     netlink.Addr
		want   netip.Prefix
		wantOK bool
	}{
		{
			name:   "ipv4 in 4-byte form",
			in:     netlink.Addr{IPNet: &net.IPNet{IP: net.IP{198, 18, 0, 1}, Mask: net.CIDRMask(24, 32)}},
			want:   netip.MustParsePrefix("198.18.0.1/24"),
			wantOK: true,
		},
		{
			name:   "ipv4 in 16-byte form",
			in:     netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("198.18.0.1"), Mask: net.CIDRMask(32, 32)}},
			want:   netip.MustParsePrefix("198.18.0.1/32"),
			wantOK: true,
		},
		{
			name:   "ipv6",
			in:     netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("fd00:1ab::1"), Mask: net.CIDRMask(64, 128)}},
			want:   netip.MustParsePrefix("fd00:1ab::1/64"),
			wantOK: true,
		},
		{name: "no ipnet", in: netlink.Addr{}},
		{
			name: "mask of the other family",
			in:   netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("fd00:1ab::1"), Mask: net.CIDRMask(24, 32)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := prefixOf(tt.in)
			if ok != tt.wantOK {
				t.Fatalf("prefixOf(%v) ok = %v, want %v", tt.in, ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("prefixOf(%v) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

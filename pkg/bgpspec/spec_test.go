package bgpspec

import (
	"net/netip"
	"testing"
	"time"
)

func TestPeerAndRouteValidate(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.1")
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"peer without address", Peer{ASN: 1}.Validate()},
		{"peer ASN 0", Peer{Address: a}.Validate()},
		{"peer hold time 1s", Peer{Address: a, ASN: 1, HoldTime: time.Second}.Validate()},
		{"peer negative BFD", Peer{Address: a, ASN: 1, BFD: &BFD{ReceiveInterval: -1}}.Validate()},
		{"route without prefix", Route{}.Validate()},
		{"route with host bits", Route{Prefix: netip.MustParsePrefix("198.18.0.1/24")}.Validate()},
		{"route next hop of the other family", Route{Prefix: netip.MustParsePrefix("198.18.100.1/32"), NextHop: netip.MustParseAddr("fd00:1ab::1")}.Validate()},
	} {
		if tc.err == nil {
			t.Errorf("%s: valid, want an error", tc.name)
		}
	}
	if err := (Peer{Address: a, ASN: 1, HoldTime: 9 * time.Second, BFD: &BFD{}}).Validate(); err != nil {
		t.Errorf("valid peer: %v", err)
	}
}

func TestParseCommunity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"65000:100", 65000<<16 | 100, true},
		{" 0:0 ", 0, true},
		{"65535:65535", 0xffffffff, true},
		{"4259840100", 4259840100, true},
		{"65536:1", 0, false},
		{"1:65536", 0, false},
		{"a:b", 0, false},
		{"", 0, false},
		{"1:2:3", 0, false},
	} {
		got, err := ParseCommunity(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseCommunity(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "0:0", "12345", "x", "1:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommunity(s)
		if err != nil {
			return
		}
		back, err := ParseCommunity(FormatCommunity(c))
		if err != nil || back != c {
			t.Errorf("%q -> %d -> %q -> %d, %v", s, c, FormatCommunity(c), back, err)
		}
	})
}

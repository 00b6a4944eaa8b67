package lbconfig

import (
	"net/netip"
	"testing"
)

func TestRouterID(t *testing.T) {
	def, a, b := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	for _, tc := range []struct {
		name    string
		peers   []Peer
		want    netip.Addr
		wantErr bool
	}{
		{"no peers", nil, def, false},
		{"none names one", []Peer{{Name: "x"}, {Name: "y"}}, def, false},
		{"one names it", []Peer{{Name: "x"}, {Name: "y", RouterID: a}}, a, false},
		{"all agree", []Peer{{Name: "x", RouterID: a}, {Name: "y", RouterID: a}}, a, false},
		{"two differ", []Peer{{Name: "x", RouterID: a}, {Name: "y"}, {Name: "z", RouterID: b}}, def, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RouterID(tc.peers, def)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("RouterID = %v, %v; want %v, error %t", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

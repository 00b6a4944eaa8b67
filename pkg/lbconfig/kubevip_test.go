package lbconfig_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

var cmpAddr = cmpopts.EquateComparable(netip.Addr{})

func TestParseKubeVIPPeers(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		in      string
		want    []lbconfig.Peer
		wantErr string
	}{
		{in: "198.18.0.1:65001", want: []lbconfig.Peer{{Name: "198.18.0.1", Address: a("198.18.0.1"), ASN: 65001}}},
		{in: "198.18.0.1:65001:s3cret:true:1790", want: []lbconfig.Peer{{Name: "198.18.0.1", Address: a("198.18.0.1"), ASN: 65001, Password: "s3cret", EBGPMultiHop: true, Port: 1790}}},
		{in: "[fd00:1ab::1]:65002::false:179", want: []lbconfig.Peer{{Name: "fd00:1ab::1", Address: a("fd00:1ab::1"), ASN: 65002, Port: 179}}},
		{in: "198.18.0.1:65001::::: true;100;150;3", want: []lbconfig.Peer{{Name: "198.18.0.1", Address: a("198.18.0.1"), ASN: 65001,
			BFD: &lbconfig.BFD{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 150 * time.Millisecond, DetectMultiplier: 3}}}},
		{in: "198.18.0.1:65001:::::false;100;100;3", want: []lbconfig.Peer{{Name: "198.18.0.1", Address: a("198.18.0.1"), ASN: 65001}}},
		{in: "198.18.0.1:65001, [fd00:1ab::2]:65001,", want: []lbconfig.Peer{
			{Name: "198.18.0.1", Address: a("198.18.0.1"), ASN: 65001}, {Name: "fd00:1ab::2", Address: a("fd00:1ab::2"), ASN: 65001}}},
		{in: "", wantErr: "no peer"},
		{in: "198.18.0.1", wantErr: "missing <AS>"},
		{in: "198.18.0.1:0", wantErr: "AS \"0\""},
		{in: "198.18.0.1:4294967296", wantErr: "AS"},
		{in: "198.18.0.1:x", wantErr: "AS \"x\""},
		{in: "bogus:65001", wantErr: "not an IP address"},
		{in: "fd00::1:65001", wantErr: "not an IP address"},
		{in: "[fd00::1:65001", wantErr: "no ]"},
		{in: "198.18.0.1:65001::maybe", wantErr: "multihop"},
		{in: "198.18.0.1:65001:::70000", wantErr: "port"},
		{in: "198.18.0.1:65001::::mpbgp_nexthop=auto_sourceif", wantErr: "mpbgp options"},
		{in: "198.18.0.1:65001:::::true;100;100", wantErr: "bfd"},
		{in: "198.18.0.1:65001:::::true;5;100;3", wantErr: "receiveInterval"},
		{in: "198.18.0.1:65001:::::true;100;100;1", wantErr: "detectMultiplier"},
		{in: "198.18.0.1:65001:a:b:c:d:e:f", wantErr: "at most 6"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := lbconfig.ParseKubeVIPPeers(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got, cmpAddr); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// FuzzParseKubeVIPPeers: never panics; every peer it returns is valid.
func FuzzParseKubeVIPPeers(f *testing.F) {
	for _, s := range []string{"198.18.0.1:65001", "[fd00::1]:1:p:true:179::true;100;100;3", ",,", "[", "1.2.3.4:1:::::;;;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		peers, err := lbconfig.ParseKubeVIPPeers(s)
		if err != nil {
			return
		}
		for _, p := range peers {
			if err := p.Validate(); err != nil || !p.Address.IsValid() {
				t.Fatalf("%q gave an invalid peer %+v: %v", s, p, err)
			}
		}
	})
}

func TestSelector(t *testing.T) {
	sel := &lbconfig.Selector{
		MatchLabels:      map[string]string{"rack": "a"},
		MatchExpressions: []lbconfig.Requirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{"node1", "node2"}}},
	}
	tests := []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"rack": "a", "kubernetes.io/hostname": "node1"}, true},
		{map[string]string{"rack": "b", "kubernetes.io/hostname": "node1"}, false},
		{map[string]string{"rack": "a", "kubernetes.io/hostname": "node3"}, false},
		{map[string]string{"rack": "a"}, false},
	}
	for _, tt := range tests {
		if got := sel.Matches(tt.labels); got != tt.want {
			t.Errorf("Matches(%v) = %t, want %t", tt.labels, got, tt.want)
		}
	}
	var none *lbconfig.Selector
	if !none.Matches(nil) {
		t.Error("a nil selector must select every node")
	}
	for op, want := range map[string]bool{"NotIn": true, "Exists": false, "DoesNotExist": true, "Bogus": false} {
		s := &lbconfig.Selector{MatchExpressions: []lbconfig.Requirement{{Key: "x", Operator: op, Values: []string{"y"}}}}
		if got := s.Matches(map[string]string{}); got != want {
			t.Errorf("%s on a node without the label = %t, want %t", op, got, want)
		}
	}
}

package cli

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/pkg/crdconfig"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

func TestSessionsWith(t *testing.T) {
	tor := netip.MustParseAddr("198.18.0.254")
	nodes := []nodestatus.Node{
		{Name: "node1", Peers: []nodestatus.Peer{
			{Peer: "198.18.0.254", ASN: 65001, State: "established"},
			{Peer: "fd00:1ab::fe", ASN: 65001, State: "established"},
		}},
		{Name: "node2", Peers: []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65001, State: "active", LastError: "connection refused"}}},
		{Name: "node3", Peers: []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65002, State: "established"}}}, // another AS: another peer
		{Name: "node4", Err: errors.New("bad annotation")},
	}
	for _, tc := range []struct {
		name string
		peer netip.Addr
		asn  uint32
		want []crdconfig.Session
	}{
		{"by address and AS", tor, 65001, []crdconfig.Session{
			{Node: "node1", State: "established"},
			{Node: "node2", State: "active", LastError: "connection refused"},
		}},
		{"other AS", tor, 65002, []crdconfig.Session{{Node: "node3", State: "established"}}},
		{"IPv6", netip.MustParseAddr("fd00:1ab::fe"), 65001, []crdconfig.Session{{Node: "node1", State: "established"}}},
		{"nobody", netip.MustParseAddr("198.18.0.1"), 65001, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, sessionsWith(nodes, tc.peer, tc.asn)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

//go:build linux

package checker

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A DHCP Service's macvlan MAC moves with the Service: two replies with that
// one MAC in a round are one answerer, however the MAC map changes while the
// round runs (a 30-minute campaign reported node1 and node4 "answering" one
// DHCP VIP when only node4 held it, its MAC last seen on node1).
func TestAnswerersNamesEachMACOnce(t *testing.T) {
	shared, eth := "6e:a6:38:84:01:25", "02:00:00:00:00:12"
	owners := map[string]string{shared: "node4", eth: "node2"}
	who := func(hw net.HardwareAddr) string { return owners[hw.String()] }
	round := map[netip.Addr][]string{
		vip: {shared, shared},
		v6:  {shared, eth, "02:00:00:00:00:99"},
	}
	want := map[netip.Addr][]string{
		vip: {"node4"},
		v6:  {"node2", "02:00:00:00:00:99", "node4"},
	}
	if diff := cmp.Diff(want, answerers(round, who)); diff != "" {
		t.Errorf("answerers (-want +got):\n%s", diff)
	}
}

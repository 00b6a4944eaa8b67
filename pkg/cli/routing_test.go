package cli

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vigil-lb/vigil/pkg/bgpspec"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

type staticConfig lbconfig.Config

func (c staticConfig) Config() lbconfig.Config { return lbconfig.Config(c) }

func (staticConfig) Synced() bool { return true }

// Which way a pool goes out and with which route attributes, from the
// advertisement objects (MetalLB's rules).
func TestAdverts(t *testing.T) {
	vip := netip.MustParseAddr("198.18.0.160")
	tor := lbconfig.Peer{Name: "tor1", Address: netip.MustParseAddr("198.18.0.250")}
	cfg := lbconfig.Config{
		Peers:            []lbconfig.Peer{tor},
		L2Advertisements: []lbconfig.L2Advertisement{{Name: "l2", Pools: []string{"lan"}}},
		BGPAdvertisements: []lbconfig.BGPAdvertisement{
			{Name: "b", Pools: []string{"routed"}, LocalPref: 50},
			{Name: "a", Pools: []string{"routed"}, Peers: []string{"tor1"}, LocalPref: 150,
				Communities: []lbconfig.Community{{Value: 65000<<16 | 100}, {Large: true, Global: 1, Local1: 2, Local2: 3}}},
			{Name: "ghost", Pools: []string{"nowhere"}, Peers: []string{"missing"}},
		},
	}
	a := adverts{src: staticConfig(cfg)}
	for pool, want := range map[string][2]bool{"lan": {true, false}, "routed": {false, true}, "other": {true, false}, "": {true, false}} {
		l2, b := a.Modes(pool)
		if [2]bool{l2, b} != want {
			t.Errorf("Modes(%q) = %t, %t; want %v", pool, l2, b, want)
		}
	}
	onEth0 := adverts{src: staticConfig{L2Advertisements: []lbconfig.L2Advertisement{{Name: "eth1", Pools: []string{"p"}, Interfaces: []string{"eth1"}}}},
		iface: (&managerOptions{iface: "eth0"}).announcesOn}
	if l2, _ := onEth0.Modes("p"); l2 {
		t.Error("an L2Advertisement for eth1 announced by a node announcing on eth0")
	}
	if l2, _ := (adverts{src: onEth0.src, iface: (&managerOptions{servicesIface: "eth1", iface: "eth0"}).announcesOn}).Modes("p"); !l2 {
		t.Error("an L2Advertisement for eth1 not announced by a node announcing on eth1 (vip_servicesinterface)")
	}
	strict := staticConfig{Pools: map[string]lbconfig.PoolInfo{"mlb": {MetalLB: true}}}
	if l2, b := (adverts{src: strict}).Modes("mlb"); l2 || b {
		t.Errorf("a MetalLB pool without advertisements: Modes = %t, %t; want not announced", l2, b)
	}
	if l2, b := (adverts{src: staticConfig{}}).Modes("any"); !l2 || !b {
		t.Errorf("no advertisement objects: Modes = %t, %t; want the settings (true, true)", l2, b)
	}
	got := a.Routes(vip, "routed")
	want := []bgpspec.Route{
		{Prefix: netip.MustParsePrefix("198.18.0.160/32"), LocalPref: 150, Communities: []uint32{65000<<16 | 100},
			LargeCommunities: []bgpspec.LargeCommunity{{Global: 1, Local1: 2, Local2: 3}}, Peers: []netip.Addr{tor.Address}},
	}
	if d := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); d != "" {
		t.Errorf("Routes (-want +got):\n%s", d)
	}
	if r := a.Routes(vip, "nowhere"); len(r) != 1 || len(r[0].Peers) != 1 || r[0].Peers[0] != netip.IPv4Unspecified() {
		t.Errorf("advertisement naming no existing peer: %+v, want none reachable", r)
	}
	if r := a.Routes(vip, "lan"); len(r) != 1 || r[0].LocalPref != 0 || r[0].Peers != nil {
		t.Errorf("L2 pool routes %+v, want a plain host route", r)
	}
}

// Each advertisement of a pool is its own route: aggregates beside the host
// route, peers merged when the attributes agree, the first by name kept
// (and the conflict told) when they do not; node selectors apply.
func TestAdvertsRoutes(t *testing.T) {
	tor1 := lbconfig.Peer{Name: "tor1", Address: netip.MustParseAddr("198.18.0.250")}
	tor2 := lbconfig.Peer{Name: "tor2", Address: netip.MustParseAddr("198.18.0.251")}
	rack1 := []*lbconfig.Selector{{MatchLabels: map[string]string{"rack": "1"}}}
	cfg := lbconfig.Config{Peers: []lbconfig.Peer{tor1, tor2}, BGPAdvertisements: []lbconfig.BGPAdvertisement{
		{Name: "a-host", Pools: []string{"p"}, Peers: []string{"tor1"}, LocalPref: 100},
		{Name: "b-host", Pools: []string{"p"}, Peers: []string{"tor2"}, LocalPref: 100},
		{Name: "c-agg", Pools: []string{"p"}, AggregationLength: 24, AggregationLengthV6: 64, Communities: []lbconfig.Community{{Value: 65535<<16 | 65282}}},
		{Name: "d-clash", Pools: []string{"p"}, LocalPref: 300},
		{Name: "e-rack2", Pools: []string{"p"}, AggregationLength: 16, Nodes: []*lbconfig.Selector{{MatchLabels: map[string]string{"rack": "2"}}}},
		{Name: "f-rack1", Pools: []string{"p"}, AggregationLength: 20, Nodes: rack1},
	}}
	var conflicts []string
	a := adverts{src: staticConfig(cfg), labels: func() map[string]string { return map[string]string{"rack": "1"} },
		conflict: func(pool, first, second string, p netip.Prefix) {
			conflicts = append(conflicts, pool+" "+first+" "+second+" "+p.String())
		}}
	opts := cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
	want := []bgpspec.Route{
		{Prefix: netip.MustParsePrefix("198.18.5.7/32"), LocalPref: 100, Peers: []netip.Addr{tor1.Address, tor2.Address}},
		{Prefix: netip.MustParsePrefix("198.18.5.0/24"), Communities: []uint32{65535<<16 | 65282}},
		{Prefix: netip.MustParsePrefix("198.18.0.0/20")},
	}
	if d := cmp.Diff(want, a.Routes(netip.MustParseAddr("198.18.5.7"), "p"), opts); d != "" {
		t.Errorf("IPv4 routes (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"p a-host d-clash 198.18.5.7/32"}, conflicts); d != "" {
		t.Errorf("conflicts (-want +got):\n%s", d)
	}
	v6 := a.Routes(netip.MustParseAddr("fd00:1ab::7"), "p")
	if len(v6) != 2 || v6[0].Prefix != netip.MustParsePrefix("fd00:1ab::7/128") || v6[1].Prefix != netip.MustParsePrefix("fd00:1ab::/64") {
		t.Errorf("IPv6 routes %+v: want the /128 and the /64 aggregate", v6)
	}
	// f-rack1 has no IPv6 length: its /128 clashes with a-host's.
	if !slices.Contains(conflicts, "p a-host f-rack1 fd00:1ab::7/128") {
		t.Errorf("conflicts %v: want f-rack1's /128 told", conflicts)
	}
}

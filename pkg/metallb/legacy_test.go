package metallb

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

var cmRef = Ref{APIVersion: "v1", Kind: "ConfigMap", Namespace: "metallb-system", Name: "config"}

// Kontena Network Loadbalancer's shape: a layer2 pool, a bgp pool, a peer
// for some nodes.
const kontena = `
peers:
- peer-address: 198.18.0.254
  peer-asn: 65001
  my-asn: 65002
  hold-time: 9s
  node-selectors:
  - match-labels:
      kubernetes.io/hostname: node2
    match-expressions:
    - {key: rack, operator: NotIn, values: ['9']}
bgp-communities:
  no-export: 65535:65281
address-pools:
- name: lan
  protocol: layer2
  addresses: [198.18.0.160-198.18.0.165]
- name: routed
  protocol: bgp
  auto-assign: false
  avoid-buggy-ips: true
  addresses: [203.0.113.0/28]
  bgp-advertisements:
  - {localpref: 150, communities: [no-export, '65000:7'], aggregation-length: 32}
`

func TestParseLegacy(t *testing.T) {
	r, err := ParseLegacy([]byte(kontena), cmRef)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) > 0 {
		t.Fatalf("problems: %v", problems(r))
	}
	wantPools := []Pool{
		{Pool: allocator.Pool{Name: "lan", Ranges: []allocator.Range{rng("198.18.0.160", "198.18.0.165")}, AutoAssign: true, Priority: noPriority}, Object: cmRef},
		{Pool: allocator.Pool{Name: "routed", Ranges: []allocator.Range{rng("203.0.113.0", "203.0.113.15")}, AvoidBuggyIPs: true, Priority: noPriority}, Object: cmRef},
	}
	if diff := cmp.Diff(wantPools, r.Pools, addrs); diff != "" {
		t.Errorf("pools (-want +got):\n%s", diff)
	}
	want := lbconfig.Config{
		Peers: []lbconfig.Peer{{Name: "198.18.0.254", Address: netip.MustParseAddr("198.18.0.254"), ASN: 65001, MyASN: 65002,
			HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, Nodes: []*lbconfig.Selector{{
				MatchLabels:      map[string]string{"kubernetes.io/hostname": "node2"},
				MatchExpressions: []lbconfig.Requirement{{Key: "rack", Operator: "NotIn", Values: []string{"9"}}}}}}},
		L2Advertisements: []lbconfig.L2Advertisement{{Name: "config/lan", Pools: []string{"lan"}}},
		BGPAdvertisements: []lbconfig.BGPAdvertisement{{Name: "config/routed/0", Pools: []string{"routed"}, LocalPref: 150,
			AggregationLength: 32, AggregationLengthV6: 128,
			Communities: []lbconfig.Community{{Value: 65535<<16 | 65281}, {Value: 65000<<16 | 7}}}},
		Pools: map[string]lbconfig.PoolInfo{"lan": {MetalLB: true}, "routed": {MetalLB: true}},
	}
	if diff := cmp.Diff(want, r.Config, addrs); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestParseLegacyDefaults(t *testing.T) {
	r, err := ParseLegacy([]byte("peers: [{peer-address: 'fd00::1', peer-asn: 1, my-asn: 2}]\naddress-pools: [{name: b, protocol: bgp, addresses: ['fd00:1::/120']}]"), cmRef)
	if err != nil || len(r.Problems) > 0 {
		t.Fatalf("%v %v", err, problems(r))
	}
	if p := r.Config.Peers[0]; p.HoldTime != 90*time.Second || p.KeepaliveTime != 30*time.Second || p.Port != 0 {
		t.Errorf("peer timers %v/%v port %d; want MetalLB's 90s/30s and the default port", p.HoldTime, p.KeepaliveTime, p.Port)
	}
	if a := r.Config.BGPAdvertisements; len(a) != 1 || a[0].AggregationLength != 32 || a[0].AggregationLengthV6 != 128 || len(a[0].Peers) != 0 {
		t.Errorf("a bgp pool without advertisements: %+v; want one to every peer, /32 and /128", a)
	}
	if !r.Pools[0].AutoAssign {
		t.Error("auto-assign defaults to true")
	}
}

// A bad entry is left out naming its field; the rest is used. Not YAML,
// or unknown keys: the whole value is refused.
func TestParseLegacyProblems(t *testing.T) {
	r, err := ParseLegacy([]byte(`
peers:
- {peer-address: 10.0.0.1, peer-asn: 0, my-asn: 1}
- {peer-address: 10.0.0.2, peer-asn: 2, my-asn: 1, hold-time: soon}
- {peer-address: 10.0.0.3, peer-asn: 2, my-asn: 1, node-selectors: [{match-expressions: [{key: a, operator: In}]}]}
- {peer-address: 10.0.0.4, peer-asn: 2, my-asn: 1}
address-pools:
- {name: ok, protocol: layer2, addresses: [10.1.0.0/30]}
- {name: ok, protocol: layer2, addresses: [10.2.0.0/30]}
- {name: proto, protocol: ospf, addresses: [10.3.0.0/30]}
- {name: addr, protocol: layer2, addresses: [10.4.0.0/30, 10.4.0.999]}
- {name: comm, protocol: bgp, addresses: [10.5.0.0/30], bgp-advertisements: [{communities: [nosuch]}]}
`), cmRef)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ConfigMap/config: peers[0].peer-asn: missing",
		"ConfigMap/config: peers[1].hold-time:",
		"ConfigMap/config: peers[2].node-selectors[0].match-expressions[0]:",
		`ConfigMap/config: address-pools[1].name: pool "ok" is defined twice`,
		`ConfigMap/config: address-pools[2].protocol: "ospf" is not layer2 or bgp`,
		"ConfigMap/config: address-pools[3].addresses[1]:",
		"ConfigMap/config: address-pools[4].bgp-advertisements[0].communities[0]:",
	}
	got := problems(r)
	if len(got) != len(want) {
		t.Fatalf("problems:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	if len(r.Config.Peers) != 1 || len(r.Pools) != 1 || r.Pools[0].Name != "ok" {
		t.Errorf("used: peers %+v, pools %+v; want 10.0.0.4 and the first ok", r.Config.Peers, r.Pools)
	}
	for _, bad := range []string{"address-pools: [", "peers: 3", "address-pools: [{name: a, prtocol: bgp}]"} {
		if _, err := ParseLegacy([]byte(bad), cmRef); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("ParseLegacy(%q) = %v; want an error naming the key config", bad, err)
		}
	}
}

// FuzzParseLegacy: any input either fails as a whole or converts; what is
// used always validates.
func FuzzParseLegacy(f *testing.F) {
	f.Add([]byte(kontena))
	f.Add([]byte("address-pools: [{name: a, protocol: layer2, addresses: ['fd00::1-fd00::5']}]"))
	f.Add([]byte("peers: [{peer-address: x}]"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseLegacy(data, cmRef)
		if err != nil {
			if len(r.Pools)+len(r.Config.Peers) > 0 {
				t.Fatalf("error %v with a result %+v", err, r)
			}
			return
		}
		for _, p := range r.Pools {
			if err := p.Validate(); err != nil {
				t.Fatalf("pool %s used but invalid: %v", p.Name, err)
			}
		}
		for _, p := range r.Config.Peers {
			if err := p.Validate(); err != nil {
				t.Fatalf("peer %s used but invalid: %v", p.Name, err)
			}
		}
		for _, a := range r.Config.BGPAdvertisements {
			if err := a.Validate(); err != nil {
				t.Fatalf("advertisement %s used but invalid: %v", a.Name, err)
			}
		}
	})
}

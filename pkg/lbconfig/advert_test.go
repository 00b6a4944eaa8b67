package lbconfig_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

func names[T any](list []T, name func(T) string) []string {
	var out []string
	for _, x := range list {
		out = append(out, name(x))
	}
	return out
}

func TestConfigFor(t *testing.T) {
	public := &lbconfig.Selector{MatchLabels: map[string]string{"zone": "public"}}
	cfg := lbconfig.Config{
		L2Advertisements: []lbconfig.L2Advertisement{
			{Name: "l2-lan", Pools: []string{"lan", "both"}},
			{Name: "l2-public", PoolSelectors: []*lbconfig.Selector{public}},
		},
		BGPAdvertisements: []lbconfig.BGPAdvertisement{
			{Name: "bgp-routed", Pools: []string{"routed", "both"}},
			{Name: "bgp-by-label", PoolSelectors: []*lbconfig.Selector{
				{MatchExpressions: []lbconfig.Requirement{{Key: "bgp", Operator: "Exists"}}}, public}},
		},
	}
	allBGP := lbconfig.Config{BGPAdvertisements: []lbconfig.BGPAdvertisement{{Name: "all"}}}
	allL2 := lbconfig.Config{L2Advertisements: []lbconfig.L2Advertisement{{Name: "all"}}}
	tests := []struct {
		name    string
		cfg     lbconfig.Config
		pool    string
		labels  map[string]string
		l2, bgp []string
	}{
		{name: "L2 by name", cfg: cfg, pool: "lan", l2: []string{"l2-lan"}},
		{name: "BGP by name only", cfg: cfg, pool: "routed", bgp: []string{"bgp-routed"}},
		{name: "both by name", cfg: cfg, pool: "both", l2: []string{"l2-lan"}, bgp: []string{"bgp-routed"}},
		{name: "both by one label", cfg: cfg, pool: "x", labels: map[string]string{"zone": "public"}, l2: []string{"l2-public"}, bgp: []string{"bgp-by-label"}},
		{name: "BGP by an expression", cfg: cfg, pool: "x", labels: map[string]string{"bgp": ""}, bgp: []string{"bgp-by-label"}},
		{name: "unselected pool falls back to L2", cfg: cfg, pool: "other", labels: map[string]string{"zone": "private"}, l2: []string{lbconfig.DefaultL2Name}},
		{name: "no configuration at all is L2", cfg: lbconfig.Config{}, pool: "any", l2: []string{lbconfig.DefaultL2Name}},
		{name: "no pools and no selectors selects every pool (BGP)", cfg: allBGP, pool: "any", bgp: []string{"all"}},
		{name: "no pools and no selectors selects every pool (L2)", cfg: allL2, pool: "any", l2: []string{"all"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l2, bgp := tt.cfg.For(tt.pool, tt.labels)
			got := [2][]string{
				names(l2, func(a lbconfig.L2Advertisement) string { return a.Name }),
				names(bgp, func(a lbconfig.BGPAdvertisement) string { return a.Name }),
			}
			if diff := cmp.Diff([2][]string{tt.l2, tt.bgp}, got); diff != "" {
				t.Errorf("For(%q) [l2, bgp] (-want +got):\n%s", tt.pool, diff)
			}
		})
	}
}

func TestAdvertisementSelects(t *testing.T) {
	rack1 := &lbconfig.Selector{MatchLabels: map[string]string{"rack": "1"}}
	rack2 := &lbconfig.Selector{MatchLabels: map[string]string{"rack": "2"}}
	a := lbconfig.BGPAdvertisement{Peers: []string{"tor1"}, Nodes: []*lbconfig.Selector{rack1, rack2}}
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"named peer", a.SelectsPeer("tor1"), true},
		{"other peer", a.SelectsPeer("tor2"), false},
		{"no peers: every peer", lbconfig.BGPAdvertisement{}.SelectsPeer("tor2"), true},
		{"node by first selector", a.SelectsNode(map[string]string{"rack": "1"}), true},
		{"node by second selector (selectors are ORed)", a.SelectsNode(map[string]string{"rack": "2"}), true},
		{"node by none", a.SelectsNode(map[string]string{"rack": "3"}), false},
		{"no node selectors: every node", lbconfig.BGPAdvertisement{}.SelectsNode(nil), true},
		{"L2 node selectors", lbconfig.L2Advertisement{Nodes: []*lbconfig.Selector{rack2}}.SelectsNode(map[string]string{"rack": "1"}), false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestAggregationDefaults(t *testing.T) {
	tests := []struct {
		a      lbconfig.BGPAdvertisement
		v4, v6 int
	}{
		{lbconfig.BGPAdvertisement{}, 32, 128},
		{lbconfig.BGPAdvertisement{AggregationLength: 24, AggregationLengthV6: 64}, 24, 64},
	}
	for _, tt := range tests {
		v4, v6 := tt.a.Aggregation()
		if v4 != tt.v4 || v6 != tt.v6 {
			t.Errorf("Aggregation() of %+v = %d, %d; want %d, %d", tt.a, v4, v6, tt.v4, tt.v6)
		}
	}
}

func TestAdvertisementValidate(t *testing.T) {
	c := func(s string) lbconfig.Community {
		v, err := lbconfig.ParseCommunity(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{"valid", lbconfig.BGPAdvertisement{AggregationLength: 32, Communities: []lbconfig.Community{c("1:2"), c("large:1:2:3")}}.Validate(), ""},
		{"v4 aggregation", lbconfig.BGPAdvertisement{AggregationLength: 33}.Validate(), "aggregationLength: 33"},
		{"v6 aggregation", lbconfig.BGPAdvertisement{AggregationLengthV6: 129}.Validate(), "aggregationLengthV6: 129"},
		{"negative", lbconfig.BGPAdvertisement{AggregationLength: -1}.Validate(), "aggregationLength: -1"},
		{"pool twice", lbconfig.BGPAdvertisement{Pools: []string{"a", "a"}}.Validate(), `ipAddressPools: "a" twice`},
		{"peer twice", lbconfig.BGPAdvertisement{Peers: []string{"p", "p"}}.Validate(), `peers: "p" twice`},
		{"community twice", lbconfig.BGPAdvertisement{Communities: []lbconfig.Community{c("1:2"), c("1:2")}}.Validate(), "communities: 1:2 twice"},
		{"L2 valid", lbconfig.L2Advertisement{Pools: []string{"a"}, Interfaces: []string{"eth0"}}.Validate(), ""},
		{"L2 interface twice", lbconfig.L2Advertisement{Interfaces: []string{"eth0", "eth0"}}.Validate(), `interfaces: "eth0" twice`},
	}
	for _, tt := range tests {
		switch {
		case tt.wantErr == "" && tt.err != nil:
			t.Errorf("%s: unexpected error %v", tt.name, tt.err)
		case tt.wantErr != "" && (tt.err == nil || !strings.Contains(tt.err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want one containing %q", tt.name, tt.err, tt.wantErr)
		}
	}
}

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		in      string
		want    lbconfig.Community
		wantErr bool
	}{
		{in: "65000:100", want: lbconfig.Community{Value: 65000<<16 | 100}},
		{in: "0:0", want: lbconfig.Community{}},
		{in: "65535:65535", want: lbconfig.Community{Value: 0xffffffff}},
		{in: "large:4200000000:1:2", want: lbconfig.Community{Large: true, Global: 4200000000, Local1: 1, Local2: 2}},
		{in: "65536:1", wantErr: true},
		{in: "1:-1", wantErr: true},
		{in: "1", wantErr: true},
		{in: "1:2:3", wantErr: true},
		{in: "large:1:2", wantErr: true},
		{in: "huge:1:2:3", wantErr: true},
		{in: "large:1:2:4294967296", wantErr: true},
		{in: "no-export", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := lbconfig.ParseCommunity(tt.in)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "community") {
				t.Errorf("ParseCommunity(%q) = %v, %v; want an error naming the community", tt.in, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCommunity(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseCommunity(%q) (-want +got):\n%s", tt.in, diff)
		}
		if got.String() != tt.in {
			t.Errorf("ParseCommunity(%q).String() = %q", tt.in, got.String())
		}
	}
}

// FuzzParseCommunity: whatever parses prints back to a string that parses
// to the same community.
func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "large:1:2:3", "1:2:3", "large:-1:0:0", ":", "0:65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := lbconfig.ParseCommunity(s)
		if err != nil {
			return
		}
		again, err := lbconfig.ParseCommunity(c.String())
		if err != nil || again != c {
			t.Fatalf("%q parsed to %+v, printed %q, parsed again to %+v, %v", s, c, c.String(), again, err)
		}
	})
}

package lbconfig

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Config is the whole announcement configuration: the speaker, its peers,
// and which pools are announced how.
type Config struct {
	Speaker           Speaker
	Peers             []Peer
	BGPAdvertisements []BGPAdvertisement
	L2Advertisements  []L2Advertisement
	// Pools the sources know, by name (nil: none known; see ForPool).
	Pools map[string]PoolInfo
}

// BGPAdvertisement announces the addresses of some pools to some peers from
// some nodes (MetalLB's BGPAdvertisement).
type BGPAdvertisement struct {
	Name string
	// Pools (by name) and PoolSelectors (any of them, on the pool's labels)
	// pick the pools; both empty: every pool.
	Pools         []string
	PoolSelectors []*Selector
	// Peers by name; empty: every peer.
	Peers []string
	// Nodes that announce (next hops), any selector; empty: every node.
	Nodes       []*Selector
	LocalPref   uint32 // 0: not sent
	Communities []Community
	// AggregationLength (IPv4) and AggregationLengthV6 roll /32s and /128s
	// up into a shorter prefix; 0: no aggregation (32 / 128). See
	// Aggregation.
	AggregationLength, AggregationLengthV6 int
}

// L2Advertisement announces the addresses of some pools by ARP / NDP from
// some nodes (MetalLB's L2Advertisement).
type L2Advertisement struct {
	Name          string
	Pools         []string
	PoolSelectors []*Selector
	Nodes         []*Selector
	// Interfaces to announce on; empty: the one whose subnet holds the VIP
	// (or vip_interface).
	Interfaces []string
}

// DefaultL2Name names the L2 advertisement For returns for a pool that no
// advertisement selects. It is not a valid object name, so it never clashes
// with one.
const DefaultL2Name = "(default)"

// For decides how an address from pool (with the pool's labels) is
// announced: by which L2 advertisements and by which BGP advertisements, in
// configuration order.
//
// MetalLB's rule: an advertisement with neither pools nor pool selectors
// selects every pool. vigil's own default, unlike MetalLB (which then does
// not announce at all): a pool that no advertisement of either kind
// selects is announced by L2, as it was before BGP existed — For returns one
// L2Advertisement named DefaultL2Name, selecting every node and interface.
// A pool selected only by BGP advertisements is announced by BGP only.
func (c Config) For(pool string, poolLabels map[string]string) (l2 []L2Advertisement, bgp []BGPAdvertisement) {
	for _, a := range c.L2Advertisements {
		if selectsPool(a.Pools, a.PoolSelectors, pool, poolLabels) {
			l2 = append(l2, a)
		}
	}
	for _, a := range c.BGPAdvertisements {
		if selectsPool(a.Pools, a.PoolSelectors, pool, poolLabels) {
			bgp = append(bgp, a)
		}
	}
	if len(l2) == 0 && len(bgp) == 0 {
		l2 = []L2Advertisement{{Name: DefaultL2Name}}
	}
	return l2, bgp
}

// selectsPool is MetalLB's pool rule: by name or by any selector; neither
// given selects every pool.
func selectsPool(names []string, sels []*Selector, pool string, labels map[string]string) bool {
	if len(names) == 0 && len(sels) == 0 {
		return true
	}
	if slices.Contains(names, pool) {
		return true
	}
	for _, s := range sels {
		if s.Matches(labels) {
			return true
		}
	}
	return false
}

// AnyMatches reports whether any selector matches labels; no selector
// matches everything (MetalLB's nodeSelectors).
func AnyMatches(sels []*Selector, labels map[string]string) bool {
	if len(sels) == 0 {
		return true
	}
	for _, s := range sels {
		if s.Matches(labels) {
			return true
		}
	}
	return false
}

// SelectsNode reports whether a node with these labels announces.
func (a BGPAdvertisement) SelectsNode(labels map[string]string) bool {
	return AnyMatches(a.Nodes, labels)
}

// SelectsPeer reports whether the advertisement goes to the named peer.
func (a BGPAdvertisement) SelectsPeer(name string) bool {
	return len(a.Peers) == 0 || slices.Contains(a.Peers, name)
}

// SelectsNode reports whether a node with these labels announces.
func (a L2Advertisement) SelectsNode(labels map[string]string) bool {
	return AnyMatches(a.Nodes, labels)
}

// Aggregation returns the prefix lengths to announce, defaults applied.
func (a BGPAdvertisement) Aggregation() (v4, v6 int) {
	v4, v6 = a.AggregationLength, a.AggregationLengthV6
	if v4 == 0 {
		v4 = 32
	}
	if v6 == 0 {
		v6 = 128
	}
	return v4, v6
}

// Validate checks an advertisement; the error names the field.
func (a BGPAdvertisement) Validate() error {
	var errs []error
	if a.AggregationLength < 0 || a.AggregationLength > 32 {
		errs = append(errs, fmt.Errorf("aggregationLength: %d is not 1-32 (0: the default, 32)", a.AggregationLength))
	}
	if a.AggregationLengthV6 < 0 || a.AggregationLengthV6 > 128 {
		errs = append(errs, fmt.Errorf("aggregationLengthV6: %d is not 1-128 (0: the default, 128)", a.AggregationLengthV6))
	}
	errs = append(errs, duplicate("ipAddressPools", a.Pools), duplicate("peers", a.Peers))
	seen := map[Community]bool{}
	for _, c := range a.Communities {
		if seen[c] {
			errs = append(errs, fmt.Errorf("communities: %s twice", c))
		}
		seen[c] = true
	}
	return errors.Join(errs...)
}

// Validate checks an advertisement; the error names the field.
func (a L2Advertisement) Validate() error {
	return errors.Join(duplicate("ipAddressPools", a.Pools), duplicate("interfaces", a.Interfaces))
}

func duplicate(field string, list []string) error {
	seen := map[string]bool{}
	for _, s := range list {
		if seen[s] {
			return fmt.Errorf("%s: %q twice", field, s)
		}
		seen[s] = true
	}
	return nil
}

// Community is a BGP community: standard (RFC 1997), written "65000:100",
// or large (RFC 8092), written "large:65000:1:2" as MetalLB does.
type Community struct {
	Large bool
	// Standard: the 32-bit value, the AS in the high 16 bits.
	Value uint32
	// Large: global administrator and the two local data parts.
	Global, Local1, Local2 uint32
}

// ParseCommunity parses "<0-65535>:<0-65535>" or
// "large:<uint32>:<uint32>:<uint32>".
func ParseCommunity(s string) (Community, error) {
	f := strings.Split(s, ":")
	switch {
	case len(f) == 2:
		hi, err1 := strconv.ParseUint(f[0], 10, 16)
		lo, err2 := strconv.ParseUint(f[1], 10, 16)
		if err1 != nil || err2 != nil {
			return Community{}, fmt.Errorf("community %q: want <0-65535>:<0-65535>", s)
		}
		return Community{Value: uint32(hi)<<16 | uint32(lo)}, nil
	case len(f) == 4 && f[0] == "large":
		var v [3]uint32
		for i, p := range f[1:] {
			n, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return Community{}, fmt.Errorf("large community %q: want large:<uint32>:<uint32>:<uint32>", s)
			}
			v[i] = uint32(n)
		}
		return Community{Large: true, Global: v[0], Local1: v[1], Local2: v[2]}, nil
	}
	return Community{}, fmt.Errorf("community %q: want 65000:100 or large:65000:1:2", s)
}

// String is the form ParseCommunity reads.
func (c Community) String() string {
	if c.Large {
		return fmt.Sprintf("large:%d:%d:%d", c.Global, c.Local1, c.Local2)
	}
	return fmt.Sprintf("%d:%d", c.Value>>16, c.Value&0xffff)
}

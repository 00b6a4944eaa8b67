package metallb

import (
	"fmt"
	"net/netip"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/vigil-lb/vigil/pkg/crdconfig"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// legacyConfig is the YAML in the "config" key of MetalLB's ConfigMap
// (MetalLB before v0.13; Kontena Network Loadbalancer renders it).
type legacyConfig struct {
	Peers          []legacyPeer      `json:"peers"`
	BGPCommunities map[string]string `json:"bgp-communities"`
	Pools          []legacyPool      `json:"address-pools"`
	BFDProfiles    []legacyBFD       `json:"bfd-profiles"`
}

type legacyPeer struct {
	MyASN         uint32           `json:"my-asn"`
	ASN           uint32           `json:"peer-asn"`
	Addr          string           `json:"peer-address"`
	SrcAddr       string           `json:"source-address"`
	Port          uint16           `json:"peer-port"`
	HoldTime      string           `json:"hold-time"`
	RouterID      string           `json:"router-id"`
	NodeSelectors []legacySelector `json:"node-selectors"`
	Password      string           `json:"password"`
	BFDProfile    string           `json:"bfd-profile"`
	EBGPMultiHop  bool             `json:"ebgp-multihop"`
}

type legacySelector struct {
	MatchLabels      map[string]string   `json:"match-labels"`
	MatchExpressions []legacyRequirement `json:"match-expressions"`
}

type legacyRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values"`
}

type legacyPool struct {
	Protocol          string         `json:"protocol"`
	Name              string         `json:"name"`
	Addresses         []string       `json:"addresses"`
	AvoidBuggyIPs     bool           `json:"avoid-buggy-ips"`
	AutoAssign        *bool          `json:"auto-assign"`
	BGPAdvertisements []legacyBGPAdv `json:"bgp-advertisements"`
}

type legacyBGPAdv struct {
	AggregationLength   *int     `json:"aggregation-length"`
	AggregationLengthV6 *int     `json:"aggregation-length-v6"`
	LocalPref           *uint32  `json:"localpref"`
	Communities         []string `json:"communities"`
}

type legacyBFD struct {
	Name             string  `json:"name"`
	ReceiveInterval  *uint32 `json:"receive-interval"`
	TransmitInterval *uint32 `json:"transmit-interval"`
	DetectMultiplier *uint32 `json:"detect-multiplier"`
	EchoInterval     *uint32 `json:"echo-interval"`
	EchoMode         bool    `json:"echo-mode"`
	PassiveMode      bool    `json:"passive-mode"`
	MinimumTTL       *uint32 `json:"minimum-ttl"`
}

// legacyHoldTime is MetalLB's default hold time for ConfigMap peers.
const legacyHoldTime = 90 * time.Second

// ParseLegacy converts the ConfigMap's "config" value. A value that is not
// valid YAML (or has unknown keys: MetalLB read it strictly) yields one
// error and nothing else; a bad pool, peer or profile is left out with a
// problem naming it, the rest is used. Every problem is against cm.
func ParseLegacy(data []byte, cm Ref) (Result, error) {
	var c legacyConfig
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return Result{}, crdconfig.FieldError(ConfigMapKey, "not MetalLB's configuration: %v", err)
	}
	r := Result{Config: lbconfig.Config{Pools: map[string]lbconfig.PoolInfo{}}}
	bad := func(err error) { r.Problems = append(r.Problems, Problem{Object: cm, Err: err, LeftOut: true}) }
	profiles := map[string]*lbconfig.BFD{}
	for i, b := range c.BFDProfiles {
		p, err := legacyBFDFrom(i, b, profiles)
		if err != nil {
			bad(err)
			continue
		}
		profiles[b.Name] = p
	}
	for i, lp := range c.Peers {
		p, err := legacyPeerFrom(i, lp, profiles)
		if err != nil {
			bad(err)
			continue
		}
		r.Config.Peers = append(r.Config.Peers, p)
	}
	for i, lp := range c.Pools {
		if err := r.addLegacyPool(i, lp, c.BGPCommunities, cm); err != nil {
			bad(err)
		}
	}
	return r, nil
}

// addLegacyPool adds a pool and its advertisements.
func (r *Result) addLegacyPool(i int, lp legacyPool, communities map[string]string, cm Ref) error {
	field := fmt.Sprintf("address-pools[%d]", i)
	if lp.Name == "" {
		return crdconfig.FieldError(field+".name", "missing")
	}
	if _, dup := r.Config.Pools[lp.Name]; dup {
		return crdconfig.FieldError(field+".name", "pool %q is defined twice", lp.Name)
	}
	p := Pool{Object: cm}
	p.Name, p.AutoAssign, p.AvoidBuggyIPs, p.Priority = lp.Name, lp.AutoAssign == nil || *lp.AutoAssign, lp.AvoidBuggyIPs, noPriority
	rs, err := addresses(lp.Addresses)
	if err != nil {
		return prefixed(field, err)
	}
	p.Ranges = rs
	switch lp.Protocol {
	case "layer2":
		r.Config.L2Advertisements = append(r.Config.L2Advertisements, lbconfig.L2Advertisement{Name: ConfigMapName + "/" + lp.Name, Pools: []string{lp.Name}})
	case "bgp":
		advs, err := legacyBGPAdvs(field, lp, communities)
		if err != nil {
			return err
		}
		r.Config.BGPAdvertisements = append(r.Config.BGPAdvertisements, advs...)
	default:
		return crdconfig.FieldError(field+".protocol", "%q is not layer2 or bgp", lp.Protocol)
	}
	r.Pools = append(r.Pools, p)
	r.Config.Pools[p.Name] = lbconfig.PoolInfo{MetalLB: true}
	return nil
}

// prefixed puts a field path in front of a field error's own.
func prefixed(prefix string, err error) error { return crdconfig.Prefix(prefix, err) }

// legacyBGPAdvs converts a bgp pool's advertisements (none: one with
// MetalLB's defaults).
func legacyBGPAdvs(field string, lp legacyPool, communities map[string]string) ([]lbconfig.BGPAdvertisement, error) {
	ads := lp.BGPAdvertisements
	if len(ads) == 0 {
		ads = []legacyBGPAdv{{}}
	}
	var out []lbconfig.BGPAdvertisement
	for j, la := range ads {
		f := fmt.Sprintf("%s.bgp-advertisements[%d]", field, j)
		a := lbconfig.BGPAdvertisement{Name: fmt.Sprintf("%s/%s/%d", ConfigMapName, lp.Name, j), Pools: []string{lp.Name}, AggregationLength: 32, AggregationLengthV6: 128}
		if la.AggregationLength != nil {
			a.AggregationLength = *la.AggregationLength
		}
		if la.AggregationLengthV6 != nil {
			a.AggregationLengthV6 = *la.AggregationLengthV6
		}
		if la.LocalPref != nil {
			a.LocalPref = *la.LocalPref
		}
		for k, c := range la.Communities {
			if v, ok := communities[c]; ok {
				c = v
			}
			v, err := lbconfig.ParseCommunity(c)
			if err != nil {
				return nil, crdconfig.FieldError(fmt.Sprintf("%s.communities[%d]", f, k), "%v (nor a name in bgp-communities)", err)
			}
			a.Communities = append(a.Communities, v)
		}
		if a.AggregationLength < 1 || a.AggregationLengthV6 < 1 {
			return nil, crdconfig.FieldError(f+".aggregation-length", "must be 1-32 (IPv4) / 1-128 (IPv6)")
		}
		if err := a.Validate(); err != nil {
			return nil, crdconfig.FieldError(f, "%v", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// legacyPeerFrom converts one of peers.
func legacyPeerFrom(i int, lp legacyPeer, profiles map[string]*lbconfig.BFD) (lbconfig.Peer, error) {
	field := fmt.Sprintf("peers[%d]", i)
	fail := func(sub, format string, args ...any) (lbconfig.Peer, error) {
		return lbconfig.Peer{}, crdconfig.FieldError(field+"."+sub, format, args...)
	}
	addr, err := netip.ParseAddr(lp.Addr)
	if err != nil || addr.Zone() != "" {
		return fail("peer-address", "%q is not an IP address", lp.Addr)
	}
	switch {
	case lp.MyASN == 0:
		return fail("my-asn", "missing (1-4294967295)")
	case lp.ASN == 0:
		return fail("peer-asn", "missing (1-4294967295)")
	case lp.EBGPMultiHop && lp.MyASN == lp.ASN:
		return fail("ebgp-multihop", "is for eBGP: my-asn and peer-asn are equal")
	}
	p := lbconfig.Peer{Name: addr.Unmap().String(), Address: addr.Unmap(), Port: lp.Port, ASN: lp.ASN, MyASN: lp.MyASN,
		Password: lp.Password, EBGPMultiHop: lp.EBGPMultiHop, HoldTime: legacyHoldTime}
	if lp.HoldTime != "" {
		if p.HoldTime, err = time.ParseDuration(lp.HoldTime); err != nil {
			return fail("hold-time", "%q is not a duration (90s)", lp.HoldTime)
		}
	}
	p.KeepaliveTime = p.HoldTime / 3
	if err := legacyPeerRefs(&p, lp, profiles); err != nil {
		return lbconfig.Peer{}, prefixed(field, err)
	}
	if err := p.Validate(); err != nil {
		return lbconfig.Peer{}, crdconfig.FieldError(field, "%v", err)
	}
	return p, nil
}

// legacyPeerRefs reads a peer's addresses, selectors and BFD profile.
func legacyPeerRefs(p *lbconfig.Peer, lp legacyPeer, profiles map[string]*lbconfig.BFD) error {
	if lp.SrcAddr != "" {
		a, err := netip.ParseAddr(lp.SrcAddr)
		if err != nil || a.Zone() != "" {
			return crdconfig.FieldError("source-address", "%q is not an IP address", lp.SrcAddr)
		}
		p.SourceAddress = a.Unmap()
	}
	if lp.RouterID != "" {
		if a, err := netip.ParseAddr(lp.RouterID); err != nil || !a.Is4() {
			return crdconfig.FieldError("router-id", "%q is not an IPv4 address", lp.RouterID)
		}
	}
	for j, ls := range lp.NodeSelectors {
		s, err := legacySelectorFrom(ls)
		if err != nil {
			return prefixed(fmt.Sprintf("node-selectors[%d]", j), err)
		}
		p.Nodes = append(p.Nodes, s)
	}
	if lp.BFDProfile != "" {
		b, ok := profiles[lp.BFDProfile]
		if !ok {
			return crdconfig.FieldError("bfd-profile", "no valid profile %q in bfd-profiles", lp.BFDProfile)
		}
		c := *b
		p.BFD = &c
	}
	return nil
}

// legacySelectorFrom converts a node selector; the error starts with the
// sub-field.
func legacySelectorFrom(ls legacySelector) (*lbconfig.Selector, error) {
	s := &lbconfig.Selector{MatchLabels: ls.MatchLabels}
	for k, e := range ls.MatchExpressions {
		ok := false
		switch e.Operator {
		case "In", "NotIn":
			ok = len(e.Values) > 0
		case "Exists", "DoesNotExist":
			ok = len(e.Values) == 0
		}
		if !ok || e.Key == "" {
			return nil, crdconfig.FieldError(fmt.Sprintf("match-expressions[%d]", k), "key %q, operator %q, values %v: want a key, In/NotIn with values or Exists/DoesNotExist without", e.Key, e.Operator, e.Values)
		}
		s.MatchExpressions = append(s.MatchExpressions, lbconfig.Requirement{Key: e.Key, Operator: e.Operator, Values: e.Values})
	}
	return s, nil
}

// legacyBFDFrom converts one of bfd-profiles.
func legacyBFDFrom(i int, b legacyBFD, seen map[string]*lbconfig.BFD) (*lbconfig.BFD, error) {
	field := fmt.Sprintf("bfd-profiles[%d]", i)
	switch {
	case b.Name == "":
		return nil, crdconfig.FieldError(field+".name", "missing")
	case seen[b.Name] != nil:
		return nil, crdconfig.FieldError(field+".name", "profile %q is defined twice", b.Name)
	case b.EchoMode || b.PassiveMode || b.EchoInterval != nil || b.MinimumTTL != nil:
		return nil, crdconfig.FieldError(field, "echo-mode, echo-interval, passive-mode and minimum-ttl are not supported by vigil")
	}
	ms := func(v *uint32) time.Duration {
		if v == nil {
			return 300 * time.Millisecond
		}
		return time.Duration(*v) * time.Millisecond
	}
	p := &lbconfig.BFD{ReceiveInterval: ms(b.ReceiveInterval), TransmitInterval: ms(b.TransmitInterval), DetectMultiplier: 3}
	if b.DetectMultiplier != nil {
		p.DetectMultiplier = *b.DetectMultiplier
	}
	if err := p.Validate(); err != nil {
		return nil, crdconfig.FieldError(field, "%v", err)
	}
	return p, nil
}

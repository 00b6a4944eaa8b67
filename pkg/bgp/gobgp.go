package bgp

import (
	"cmp"
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	pkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Conversions between the package's types and GoBGP's.

// globalConfig is GoBGP's StartBgp request for c.
func globalConfig(c Config) *api.StartBgpRequest {
	port := c.ListenPort
	if port <= 0 {
		port = -1 // GoBGP's 0 means 179: never listen by accident
	}
	g := &api.Global{Asn: c.ASN, RouterId: c.RouterID.String(), ListenPort: port, Families: unicastFamilies()}
	for _, a := range c.ListenAddresses {
		g.ListenAddresses = append(g.ListenAddresses, a.String())
	}
	return &api.StartBgpRequest{Global: g}
}

// unicastFamilies are the only address families vigil announces. Without
// them GoBGP makes a RIB table for each of the ~30 families it knows, each
// with 2,048 pre-made shards: ~9 MiB of heap for tables that stay empty.
func unicastFamilies() []uint32 {
	return []uint32{
		uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV4_UNICAST]),
		uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV6_UNICAST]),
	}
}

// peerConfig is GoBGP's peer for p.
func peerConfig(p Peer, defaultSource netip.Addr) *api.Peer {
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if !p.Address.Is4() {
		fam.Afi = api.Family_AFI_IP6
	}
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, LocalAsn: p.LocalASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          seconds(p.HoldTime),
			KeepaliveInterval: seconds(p.KeepaliveTime),
			ConnectRetry:      seconds(cmp.Or(p.ConnectTime, DefaultConnectTime)),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}},
		// Explicitly off unless asked: a router would keep our routes
		// for the restart time after we are gone.
		GracefulRestart: &api.GracefulRestart{Enabled: p.GracefulRestart},
	}
	if src := sourceFor(p, defaultSource); src.IsValid() {
		ap.Transport.LocalAddress = src.String()
	}
	if p.EBGPMultiHop > 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultiHop)}
	}
	if p.BFD != nil {
		ap.Bfd = bfdConfig(*p.BFD)
	}
	return ap
}

// sourceFor is p's local address: its own, else the default if it is of
// p's family.
func sourceFor(p Peer, defaultSource netip.Addr) netip.Addr {
	if p.SourceAddress.IsValid() {
		return p.SourceAddress
	}
	if defaultSource.IsValid() && defaultSource.Is4() == p.Address.Is4() {
		return defaultSource
	}
	return netip.Addr{}
}

// bfdConfig converts b to GoBGP's BFD settings, whose intervals are in
// MICROseconds.
func bfdConfig(b BFD) *api.BfdPeerConfig {
	mult := b.DetectMultiplier
	if mult == 0 {
		mult = 3
	}
	return &api.BfdPeerConfig{
		Enabled:                  true,
		RequiredMinimumReceive:   micros(b.ReceiveInterval, 300*time.Millisecond),
		DesiredMinimumTxInterval: micros(b.TransmitInterval, 300*time.Millisecond),
		DetectionMultiplier:      mult,
	}
}

// micros is d (or def when d is 0) in microseconds.
func micros(d, def time.Duration) uint32 {
	if d == 0 {
		d = def
	}
	return uint32(d / time.Microsecond)
}

// seconds rounds d up to whole seconds (0 stays 0: GoBGP's default).
func seconds(d time.Duration) uint64 {
	return uint64((d + time.Second - 1) / time.Second)
}

// family is GoBGP's family of a prefix.
func family(p netip.Prefix) pkt.Family {
	if p.Addr().Is4() {
		return pkt.RF_IPv4_UC
	}
	return pkt.RF_IPv6_UC
}

// path is GoBGP's path announcing r (or withdrawing r.Prefix).
func path(r Route, withdraw bool) (*apiutil.Path, error) {
	nlri, err := pkt.NewIPAddrPrefix(r.Prefix)
	if err != nil {
		return nil, fmt.Errorf("bgp: prefix %s: %w", r.Prefix, err)
	}
	p := &apiutil.Path{Family: family(r.Prefix), Nlri: nlri, Withdrawal: withdraw}
	if withdraw {
		return p, nil
	}
	attrs, err := pathAttrs(r, nlri)
	if err != nil {
		return nil, err
	}
	p.Attrs = attrs
	return p, nil
}

// pathAttrs are r's attributes; an unspecified next hop (0.0.0.0, ::) is
// replaced by GoBGP with the session's local address (next hop self).
func pathAttrs(r Route, nlri pkt.NLRI) ([]pkt.PathAttributeInterface, error) {
	nh := r.NextHop
	if !nh.IsValid() {
		nh = netip.IPv4Unspecified()
		if !r.Prefix.Addr().Is4() {
			nh = netip.IPv6Unspecified()
		}
	}
	attrs := []pkt.PathAttributeInterface{pkt.NewPathAttributeOrigin(pkt.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if r.Prefix.Addr().Is4() {
		a, err := pkt.NewPathAttributeNextHop(nh)
		if err != nil {
			return nil, fmt.Errorf("bgp: next hop %s: %w", nh, err)
		}
		attrs = append(attrs, a)
	} else {
		a, err := pkt.NewPathAttributeMpReachNLRI(pkt.RF_IPv6_UC, []pkt.PathNLRI{{NLRI: nlri}}, nh)
		if err != nil {
			return nil, fmt.Errorf("bgp: next hop %s: %w", nh, err)
		}
		attrs = append(attrs, a)
	}
	if r.LocalPref != 0 {
		attrs = append(attrs, pkt.NewPathAttributeLocalPref(r.LocalPref))
	}
	if len(r.Communities) > 0 {
		attrs = append(attrs, pkt.NewPathAttributeCommunities(r.Communities))
	}
	if len(r.LargeCommunities) > 0 {
		lcs := make([]*pkt.LargeCommunity, len(r.LargeCommunities))
		for i, c := range r.LargeCommunities {
			lcs[i] = pkt.NewLargeCommunity(c.Global, c.Local1, c.Local2)
		}
		attrs = append(attrs, pkt.NewPathAttributeLargeCommunities(lcs))
	}
	return attrs, nil
}

// sessionState names a GoBGP FSM state.
func sessionState(s pkt.FSMState) string {
	switch s {
	case pkt.BGP_FSM_IDLE:
		return "idle"
	case pkt.BGP_FSM_CONNECT:
		return "connect"
	case pkt.BGP_FSM_ACTIVE:
		return "active"
	case pkt.BGP_FSM_OPENSENT:
		return "opensent"
	case pkt.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case pkt.BGP_FSM_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

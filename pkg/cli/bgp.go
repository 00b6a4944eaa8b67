package cli

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-lb/vigil/pkg/lbconfig"
	"github.com/vigil-lb/vigil/pkg/netif"
)

// bgpOptions are kube-vip's bgp_* settings, read as they are.
type bgpOptions struct {
	enable     bool
	as         string
	routerID   string
	routerIF   string
	peers      string
	peerAddr   string
	peerAS     string
	peerPass   string
	multihop   bool
	sourceIP   string
	sourceIF   string
	holdTime   int
	keepalive  int
	listenPort int
}

func bgpSettings(o *bgpOptions) []setting {
	return []setting{
		{"bgp", []string{"bgp_enable"}, "advertise Service VIPs to BGP peers", boolean(&o.enable, false)},
		{"bgp-as", []string{"bgp_as"}, "this node's AS number", str(&o.as, "65000")},
		{"bgp-router-id", []string{"bgp_routerid"}, "BGP router id, an IPv4 address (empty: the first IPv4 address of --bgp-router-interface, else of the default-route interface)", str(&o.routerID, "")},
		{"bgp-router-interface", []string{"bgp_routerinterface"}, "interface whose IPv4 address is the router id when bgp_routerid is empty", str(&o.routerIF, "")},
		{"bgp-peers", []string{"bgp_peers"}, "peers: <address>:<AS>:<password>:<multihop>:<port>::<bfd enable;rx-ms;tx-ms;multiplier>, comma-separated, IPv6 in [brackets]", str(&o.peers, "")},
		{"bgp-peer-address", []string{"bgp_peeraddress"}, "one more peer's address", str(&o.peerAddr, "")},
		{"bgp-peer-as", []string{"bgp_peeras"}, "that peer's AS number", str(&o.peerAS, "65000")},
		{"bgp-peer-password", []string{"bgp_peerpass"}, "that peer's TCP-MD5 password", str(&o.peerPass, "")},
		{"bgp-multihop", []string{"bgp_multihop"}, "that peer is not directly connected (eBGP multihop)", boolean(&o.multihop, false)},
		{"bgp-source-ip", []string{"bgp_sourceip"}, "local address of the BGP sessions", str(&o.sourceIP, "")},
		{"bgp-source-interface", []string{"bgp_sourceif"}, "local interface of the BGP sessions (its first address, when bgp_sourceip is empty)", str(&o.sourceIF, "")},
		{"bgp-hold-time", []string{"bgp_hold_time"}, "hold time, seconds", integer(&o.holdTime, 30)},
		{"bgp-keepalive-interval", []string{"bgp_keepalive_interval"}, "keepalive interval, seconds", integer(&o.keepalive, 10)},
		{"bgp-listen-port", []string{"vigil_bgp_listen_port"}, "also accept BGP sessions on this port (0: dial out only, so a CNI's speaker keeps 179)", integer(&o.listenPort, 0)},
	}
}

// bgpConfig is the typed result of the bgp_* settings.
type bgpConfig struct {
	speaker lbconfig.Speaker
	peers   []lbconfig.Peer
}

// resolve checks the settings and builds the typed model; every error names
// the variable at fault.
func (o *bgpOptions) resolve(addrsOf func(iface string) ([]netip.Addr, error)) (bgpConfig, error) {
	var c bgpConfig
	if !o.enable {
		return c, nil
	}
	asn, err := parseASN("bgp_as", o.as)
	if err != nil {
		return c, err
	}
	c.speaker = lbconfig.Speaker{ASN: asn, ListenPort: -1, SourceIF: o.sourceIF}
	if o.listenPort < 0 || o.listenPort > 65535 {
		return c, fmt.Errorf("vigil_bgp_listen_port=%d: not 0-65535", o.listenPort)
	}
	if o.listenPort > 0 {
		c.speaker.ListenPort = int32(o.listenPort)
	}
	if c.speaker.RouterID, err = o.routerIDFrom(addrsOf); err != nil {
		return c, err
	}
	if c.speaker.SourceAddress, err = o.source(addrsOf); err != nil {
		return c, err
	}
	c.peers, err = o.peerList()
	return c, err
}

func parseASN(name, v string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s=%q: an AS number is 1 to 4294967295", name, v)
	}
	return uint32(n), nil
}

func (o *bgpOptions) routerIDFrom(addrsOf func(string) ([]netip.Addr, error)) (netip.Addr, error) {
	if o.routerID != "" {
		a, err := netip.ParseAddr(o.routerID)
		if err != nil || !a.Is4() {
			return netip.Addr{}, fmt.Errorf("bgp_routerid=%q: a router id is an IPv4 address", o.routerID)
		}
		return a, nil
	}
	iface, name := o.routerIF, "bgp_routerinterface"
	if iface == "" {
		name = "bgp_routerid (empty: from the default-route interface)"
	}
	addrs, err := addrsOf(iface)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: cannot find a router id: %w", name, err)
	}
	for _, a := range addrs {
		if a.Is4() {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: no IPv4 address to use as router id on %q; set bgp_routerid", name, iface)
}

func (o *bgpOptions) source(addrsOf func(string) ([]netip.Addr, error)) (netip.Addr, error) {
	if o.sourceIP != "" {
		a, err := netip.ParseAddr(o.sourceIP)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("bgp_sourceip=%q: not an IP address", o.sourceIP)
		}
		return a, nil
	}
	if o.sourceIF == "" {
		return netip.Addr{}, nil
	}
	addrs, err := addrsOf(o.sourceIF)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("bgp_sourceif=%q: no address on it (%v)", o.sourceIF, err)
	}
	return addrs[0], nil
}

// peerList merges bgp_peers and the single bgp_peeraddress peer, with the
// hold and keepalive times. None is fine: BGPPeer objects may bring them.
func (o *bgpOptions) peerList() ([]lbconfig.Peer, error) {
	var peers []lbconfig.Peer
	if strings.TrimSpace(o.peers) != "" {
		list, err := lbconfig.ParseKubeVIPPeers(o.peers)
		if err != nil {
			return nil, fmt.Errorf("bgp_peers: %w", err)
		}
		peers = list
	}
	if o.peerAddr != "" {
		p, err := o.singlePeer()
		if err != nil {
			return nil, err
		}
		peers = append(peers, p)
	}
	for i := range peers {
		peers[i].HoldTime = time.Duration(o.holdTime) * time.Second
		peers[i].KeepaliveTime = time.Duration(o.keepalive) * time.Second
		if err := peers[i].Validate(); err != nil {
			return nil, fmt.Errorf("bgp_hold_time/bgp_keepalive_interval: peer %s: %w", peers[i].Address, err)
		}
	}
	return peers, nil
}

func (o *bgpOptions) singlePeer() (lbconfig.Peer, error) {
	a, err := netip.ParseAddr(strings.Trim(o.peerAddr, "[]"))
	if err != nil {
		return lbconfig.Peer{}, fmt.Errorf("bgp_peeraddress=%q: not an IP address", o.peerAddr)
	}
	asn, err := parseASN("bgp_peeras", o.peerAS)
	if err != nil {
		return lbconfig.Peer{}, err
	}
	return lbconfig.Peer{Name: a.String(), Address: a, ASN: asn, Password: o.peerPass, EBGPMultiHop: o.multihop}, nil
}

// interfaceAddrs lists an interface's global unicast addresses ("": the
// default-route interface's).
func interfaceAddrs(iface string) ([]netip.Addr, error) {
	if iface == "" {
		name, err := netif.DefaultRouteInterface(nil)
		if err != nil {
			return nil, err
		}
		iface = name
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	list, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", iface, err)
	}
	var out []netip.Addr
	for _, a := range list {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().IsGlobalUnicast() {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

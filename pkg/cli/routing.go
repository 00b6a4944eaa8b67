package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/vigil-lb/vigil/pkg/arpguard"
	"github.com/vigil-lb/vigil/pkg/bgpspec"
	"github.com/vigil-lb/vigil/pkg/crdconfig"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
	"github.com/vigil-lb/vigil/pkg/netif"
	"github.com/vigil-lb/vigil/pkg/peering"
	"github.com/vigil-lb/vigil/pkg/plan"
	"github.com/vigil-lb/vigil/pkg/routed"
)

// routing is how the manager advertises by BGP: the agent's plan rule and
// whether L2 stays on.
func (o *managerOptions) routing() (plan.Routing, bool) {
	switch {
	case !o.bgp.enable:
		return plan.RoutingOff, false
	case o.perService:
		return plan.RoutingElected, !o.arp // kube-vip: the Lease holder advertises
	default:
		return plan.RoutingECMP, !o.arp // every eligible node advertises
	}
}

// router builds the BGP speaker and the routed dataplane, and removes what
// a previous run left on lo. Without bgp_enable it builds nothing.
func (m *manager) router(client *kubeclient.Clientset) error {
	if !m.o.bgp.enable {
		return nil
	}
	if err := m.bgpObjects(client); err != nil {
		return err
	}
	c := m.o.bgpCfg
	sp, err := m.o.newSpeaker(bgpspec.Config{
		ASN: c.speaker.ASN, RouterID: c.speaker.RouterID, ListenPort: c.speaker.ListenPort,
		SourceAddress: c.speaker.SourceAddress, Log: m.log.With("component", "bgp"),
	})
	if err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	m.speaker = sp
	cfg := routed.Config{Journal: routesJournal(m.o.stateFile), Log: m.log,
		Routes: m.adverts().Routes, Peers: func() int { return int(m.sessionsUp.Load()) }}
	if _, l2Off := m.o.routing(); !l2Off {
		m.routed = routed.New(cfg, sp, nil, nil) // L2 binds the address on the holder
		return nil
	}
	return m.localRouted(cfg, sp)
}

// bgpBuild is the build of vigil that links the BGP speaker (cmd/vigil-bgp).
const bgpBuild = "vigil-bgp"

// execWithBGP replaces this process (same PID, arguments and environment)
// with vigil-bgp, found beside this executable or in $PATH: vigil's own
// binary does not link GoBGP, whose packages cost every process that links
// them about 10 MiB, so an agent pays for BGP only when it speaks it. It
// returns only on failure.
func execWithBGP(args []string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bgp_enable=true: find this executable: %w", err)
	}
	path := filepath.Join(filepath.Dir(self), bgpBuild)
	if _, err := os.Stat(path); err != nil {
		if path, err = exec.LookPath(bgpBuild); err != nil {
			return fmt.Errorf("bgp_enable=true needs %s (vigil with its BGP speaker) beside %s or in $PATH: %w", bgpBuild, self, err)
		}
	}
	argv := append([]string{path}, args...)
	return fmt.Errorf("bgp_enable=true: exec %s: %w", path, syscall.Exec(path, argv, os.Environ()))
}

// routesJournal is the routed dataplane's journal beside the VIP journal
// (vips.json -> vips-routes.json).
func routesJournal(stateFile string) string {
	return strings.TrimSuffix(stateFile, filepath.Ext(stateFile)) + "-routes.json"
}

// localRouted makes advertised addresses local (lo) and hidden from ARP.
func (m *manager) localRouted(cfg routed.Config, sp routed.Speaker) error {
	// One netlink socket for the agent's life (closed with the process),
	// not one per request: the guard changes once per VIP.
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	lo, err := netif.Open("lo")
	if err != nil {
		return err
	}
	m.routed = routed.New(cfg, sp, arpguard.New(conn), lo)
	removed, err := m.routed.Recover()
	if err != nil {
		return fmt.Errorf("remove addresses left on lo by a previous run: %w", err)
	}
	if len(removed) > 0 {
		m.log.Info("removed stale routed VIPs from lo", "vips", removed)
	}
	return nil
}

// bgpObjects builds the source of vigil.io BGPPeer, BGPAdvertisement,
// BFDProfile and L2Advertisement objects (optional CRDs).
func (m *manager) bgpObjects(client *kubeclient.Clientset) error {
	dyn, err := dynamic.NewForConfig(m.cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	m.sessions, err = newNodeSessions(client, m.o.leaseNamespace, func() {
		if m.crds != nil {
			m.crds.Resync()
		}
	})
	if err != nil {
		return fmt.Errorf("node Lease informer: %w", err)
	}
	m.crds = crdconfig.New(client, dyn, client.Secrets(m.o.leaseNamespace), crdconfig.Options{
		Namespace: m.o.leaseNamespace, Log: m.log.With("component", "bgp-config"), Recorder: m.recorder,
		Sessions: m.sessions.Sessions,
		Writes:   func() bool { return m.ag != nil && m.ag.StatusWriter() },
		OnChange: func() {
			if m.peers != nil {
				m.peers.Changed()
			}
			if m.ag != nil {
				m.ag.EnqueueAll()
			}
		},
	})
	return nil
}

// adverts reads the advertisement objects for this node.
func (m *manager) adverts() adverts {
	return adverts{src: m.configSources(), static: m.o.bgpCfg.peers, iface: m.o.announcesOn, labels: func() map[string]string {
		if m.ag == nil {
			return nil
		}
		if l := m.ag.NodeLabels(); l != nil {
			return l
		}
		// No Node object (yet): the label kubelet sets, as peering does.
		return map[string]string{corev1.LabelHostname: m.o.nodeName}
	}, conflict: m.advertConflict}
}

// advertConflict logs, once per pair and prefix length, two BGP
// advertisements that give one prefix different attributes.
func (m *manager) advertConflict(pool, first, second string, p netip.Prefix) {
	key := fmt.Sprintf("%s/%s/%s/%d", pool, first, second, p.Bits())
	if _, seen := m.conflicts.LoadOrStore(key, true); seen {
		return
	}
	m.log.Warn("two BGP advertisements give one prefix different attributes: the first by name is announced",
		"pool", pool, "announced", first, "left out", second, "prefix", p)
}

// peering builds the controller that keeps this node's sessions: bgp_*
// peers plus the BGPPeers selecting this node.
func (m *manager) peering(client *kubeclient.Clientset) {
	if m.speaker == nil {
		return
	}
	m.peers = peering.New(peering.Config{
		Static: m.o.bgpCfg.peers, Log: m.log.With("component", "bgp-peers"),
		LabelsChanged: func() {
			if m.ag != nil {
				m.ag.EnqueueAll()
			}
		},
		NodeLabels: func(ctx context.Context) (map[string]string, error) {
			n, err := client.Nodes().Get(ctx, m.o.nodeName, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return map[string]string{corev1.LabelHostname: m.o.nodeName}, nil
			}
			if err != nil {
				return nil, err
			}
			return n.Labels, nil
		},
	}, m.configSources(), speakerSessions{sp: m.speaker, routerID: m.o.bgpCfg.speaker.RouterID, log: m.log.With("component", "bgp-peers")})
}

// speakerSessions maps the typed model onto the speaker's peers.
// speakerSessions gives the peers this node must have to the speaker,
// with the router id they name (routerID on BGPPeers) or the settings'.
type speakerSessions struct {
	sp       Speaker
	routerID netip.Addr // from bgp_routerid or the node's address
	log      *slog.Logger
}

func (s speakerSessions) SetPeers(ctx context.Context, peers []lbconfig.Peer) error {
	id, err := lbconfig.RouterID(peers, s.routerID)
	if err != nil {
		s.log.Warn("BGP router id", "err", err)
	}
	if err := s.sp.SetRouterID(id); err != nil {
		return err
	}
	return s.sp.SetPeers(ctx, bgpPeers(peers))
}

// bgpPeers maps the typed model onto the speaker's peers.
func bgpPeers(peers []lbconfig.Peer) []bgpspec.Peer {
	out := make([]bgpspec.Peer, 0, len(peers))
	for _, p := range peers {
		bp := bgpspec.Peer{
			Address: p.Address, Port: p.Port, ASN: p.ASN, LocalASN: p.MyASN, Password: p.Password,
			HoldTime: p.HoldTime, KeepaliveTime: p.KeepaliveTime, ConnectTime: p.ConnectTime,
			GracefulRestart: p.GracefulRestart, SourceAddress: p.SourceAddress,
		}
		if p.EBGPMultiHop {
			bp.EBGPMultiHop = 255
		}
		if p.BFD != nil {
			bp.BFD = &bgpspec.BFD{ReceiveInterval: p.BFD.ReceiveInterval, TransmitInterval: p.BFD.TransmitInterval, DetectMultiplier: p.BFD.DetectMultiplier}
		}
		out = append(out, bp)
	}
	return out
}

// adverts reads the advertisement objects: which way a pool's addresses go
// out, and the attributes of their routes.
type adverts struct {
	src interface {
		Config() lbconfig.Config
		Synced() bool
	}
	static []lbconfig.Peer          // bgp_* peers, named by address
	labels func() map[string]string // this node's labels (nil: unknown)
	// conflict hears of two advertisements of a pool giving one prefix
	// different attributes (first, by name, wins); nil: not told.
	conflict func(pool, first, second string, p netip.Prefix)
	// iface reports whether this node announces on one of the listed
	// interfaces (nil: it does).
	iface func(list []string) bool
}

// Synced reports whether the advertisement objects have been read.
func (a adverts) Synced() bool { return a.src.Synced() }

// Modes: without any advertisement object the settings decide (every
// Service by L2 unless vip_arp=false, and by BGP); with some, MetalLB's
// rules (a pool no advertisement selects stays on L2) — except that a pool
// of MetalLB's own that no advertisement selects is not announced, as in
// MetalLB (lbconfig.ForPool).
func (a adverts) Modes(pool string) (l2, bgp bool) {
	cfg := a.src.Config()
	if len(cfg.L2Advertisements) == 0 && len(cfg.BGPAdvertisements) == 0 && !cfg.Strict(pool) {
		return true, true
	}
	l2s, bgps := cfg.ForPool(pool)
	labels := a.nodeLabels()
	return slices.ContainsFunc(l2s, func(x lbconfig.L2Advertisement) bool { return x.SelectsNode(labels) && a.onInterfaces(x.Interfaces) }),
		slices.ContainsFunc(bgps, func(x lbconfig.BGPAdvertisement) bool { return x.SelectsNode(labels) })
}

// onInterfaces reports whether this node announces on one of an
// L2Advertisement's interfaces (none listed: any).
func (a adverts) onInterfaces(list []string) bool {
	return len(list) == 0 || a.iface == nil || a.iface(list)
}

// nodeLabels are this node's labels; unknown labels select only
// advertisements without node selectors.
func (a adverts) nodeLabels() map[string]string {
	if a.labels == nil {
		return map[string]string{}
	}
	if l := a.labels(); l != nil {
		return l
	}
	return map[string]string{}
}

// Routes are the routes that carry addr from this node, one per BGP
// advertisement of its pool that selects the node (MetalLB announces each
// on its own): the host prefix, or the aggregate its aggregationLength(V6)
// gives, with its local preference, communities and peers. Without any
// advertisement: the host prefix to every peer. GoBGP keeps one path per
// prefix, so advertisements that give one prefix the same attributes merge
// their peers, and with different attributes the first by name wins (the
// conflict is reported through conflict, once per pair).
func (a adverts) Routes(addr netip.Addr, pool string) []bgpspec.Route {
	cfg := a.src.Config()
	_, advs := cfg.ForPool(pool)
	labels := a.nodeLabels()
	advs = slices.DeleteFunc(advs, func(x lbconfig.BGPAdvertisement) bool { return !x.SelectsNode(labels) })
	if len(advs) == 0 {
		return routed.HostRoutes(addr, pool)
	}
	slices.SortFunc(advs, func(x, y lbconfig.BGPAdvertisement) int { return strings.Compare(x.Name, y.Name) })
	peers := append(slices.Clone(a.static), cfg.Peers...)
	var out []bgpspec.Route
	from := map[netip.Prefix]string{} // prefix → the advertisement that gave it
	for _, adv := range advs {
		r := advertRoute(addr, adv, peers)
		i := slices.IndexFunc(out, func(o bgpspec.Route) bool { return o.Prefix == r.Prefix })
		switch {
		case i < 0:
			out, from[r.Prefix] = append(out, r), adv.Name
		case sameAttributes(out[i], r):
			out[i].Peers = unionPeers(out[i].Peers, r.Peers)
		case a.conflict != nil:
			a.conflict(pool, from[r.Prefix], adv.Name, r.Prefix)
		}
	}
	return out
}

// advertRoute is adv's route for addr.
func advertRoute(addr netip.Addr, adv lbconfig.BGPAdvertisement, peers []lbconfig.Peer) bgpspec.Route {
	v4, v6 := adv.Aggregation()
	bits := v4
	if addr.Is6() {
		bits = v6
	}
	r := bgpspec.Route{Prefix: netip.PrefixFrom(addr, bits).Masked(), LocalPref: adv.LocalPref}
	for _, c := range adv.Communities {
		if c.Large {
			r.LargeCommunities = append(r.LargeCommunities, bgpspec.LargeCommunity{Global: c.Global, Local1: c.Local1, Local2: c.Local2})
		} else {
			r.Communities = append(r.Communities, c.Value)
		}
	}
	r.Peers = peerAddrs(adv.Peers, peers)
	return r
}

// sameAttributes: the same route apart from its peers.
func sameAttributes(x, y bgpspec.Route) bool {
	x.Peers, y.Peers = nil, nil
	return reflect.DeepEqual(x, y)
}

// unionPeers merges two peer restrictions (nil: every peer).
func unionPeers(x, y []netip.Addr) []netip.Addr {
	if x == nil || y == nil {
		return nil
	}
	out := slices.Concat(x, y)
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// peerAddrs maps peer names to addresses (all peers: nil).
func peerAddrs(names []string, peers []lbconfig.Peer) []netip.Addr {
	var out []netip.Addr
	for _, p := range peers {
		if slices.Contains(names, p.Name) {
			out = append(out, p.Address)
		}
	}
	if len(names) > 0 && len(out) == 0 {
		// Named peers that do not exist: an address no session has, so
		// the route goes to none (an empty list would mean every peer).
		return []netip.Addr{netip.IPv4Unspecified()}
	}
	return out
}

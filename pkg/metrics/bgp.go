package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// bgpStates are the session states vigil_bgp_session_state reports, one
// series each per peer (the BGP finite state machine's, RFC 4271 8.2.2).
func bgpStates() []string {
	return []string{"idle", "connect", "active", "opensent", "openconfirm", "established"}
}

// BGPPeer is one BGP session as the metrics see it.
type BGPPeer struct {
	// Peer is the peer's address, the series' peer label.
	Peer string
	// State is idle, connect, active, opensent, openconfirm or
	// established (the session is up); any other value sets every state
	// series of the peer to 0.
	State string
	// PrefixesAdvertised is the number of prefixes sent on the session.
	PrefixesAdvertised int
	// UpdatesSent counts UPDATE messages sent on the current session.
	UpdatesSent uint64
}

// bgpCollectors are the per-peer session collectors and the peers they
// hold series for.
type bgpCollectors struct {
	up, state, prefixes, updates *prometheus.GaugeVec

	mu    sync.Mutex
	peers map[string]bool
}

func newBGPCollectors() bgpCollectors {
	return bgpCollectors{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_bgp_session_up", Help: "1 when the BGP session with the peer is established, else 0."}, []string{"peer"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_bgp_session_state", Help: "1 for the BGP session's current state, 0 for the others."}, []string{"peer", "state"}),
		prefixes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_bgp_prefixes_advertised", Help: "Prefixes this node advertises to the peer."}, []string{"peer"}),
		updates: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_bgp_session_updates_sent", Help: "UPDATE messages sent on the current BGP session with the peer (starts again with each session)."}, []string{"peer"}),
		peers: map[string]bool{},
	}
}

// BGPPeers sets the BGP session series to peers: every configured peer,
// as the speaker last reported them. Peers no longer listed lose their
// series.
func (m *Metrics) BGPPeers(peers []BGPPeer) {
	b := &m.bgp
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := make(map[string]bool, len(peers))
	for _, p := range peers {
		seen[p.Peer] = true
		b.set(p)
	}
	for p := range b.peers {
		if !seen[p] {
			b.delete(p)
		}
	}
	b.peers = seen
}

func (b *bgpCollectors) set(p BGPPeer) {
	up := 0.0
	if p.State == "established" {
		up = 1
	}
	b.up.WithLabelValues(p.Peer).Set(up)
	b.prefixes.WithLabelValues(p.Peer).Set(float64(p.PrefixesAdvertised))
	b.updates.WithLabelValues(p.Peer).Set(float64(p.UpdatesSent))
	for _, s := range bgpStates() {
		v := 0.0
		if s == p.State {
			v = 1
		}
		b.state.WithLabelValues(p.Peer, s).Set(v)
	}
}

func (b *bgpCollectors) delete(peer string) {
	b.up.DeleteLabelValues(peer)
	b.prefixes.DeleteLabelValues(peer)
	b.updates.DeleteLabelValues(peer)
	b.state.DeletePartialMatch(prometheus.Labels{"peer": peer})
}

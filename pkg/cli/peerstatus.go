package cli

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/bgpspec"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/metrics"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

// peerStatusInterval is how often the BGP sessions are read besides on
// every change the speaker signals.
const peerStatusInterval = 10 * time.Second

// peerSource is the BGP speaker as the peer watch sees it.
type peerSource interface {
	Peers(ctx context.Context) ([]bgpspec.PeerState, error)
	Changes() <-chan struct{}
}

// peerPublisher records this node's sessions where `vigil status` reads
// them.
type peerPublisher interface {
	Publish(ctx context.Context, peers []nodestatus.Peer) (bool, error)
}

// peerMetrics takes the sessions for Prometheus.
type peerMetrics interface{ BGPPeers([]metrics.BGPPeer) }

// peerWatch reads the speaker's sessions on every change and every
// interval, and hands them to the metrics and the node's Lease.
type peerWatch struct {
	src     peerSource
	pub     peerPublisher
	met     peerMetrics
	clock   clock.Clock
	every   time.Duration
	log     *slog.Logger
	lastErr string // the last error logged, so a lasting one is logged once
	// up, when set, takes the number of established sessions at every
	// report (what the BGP status says, without asking GoBGP per Service).
	up *atomic.Int32
	// upChanged, when set, is called after up changed (an elected
	// BGP-only Service is campaigned for only with a session): it must only
	// enqueue.
	upChanged func()
}

// publishPeers runs the peer watch of this node until ctx ends.
func (m *manager) publishPeers(ctx context.Context) {
	cfg := rest.CopyConfig(m.cfg)
	cfg.UserAgent = "vigil/" + Version
	client, err := kubeclient.New(cfg)
	if err != nil {
		m.log.Error("BGP peer status not published", "err", err)
		return
	}
	w := &peerWatch{
		src: m.speaker, met: m.metrics, clock: clock.Real{}, every: peerStatusInterval,
		pub: nodestatus.NewPublisher(client, m.o.leaseNamespace, m.o.nodeName),
		log: m.log.With("component", "bgp-status"), up: &m.sessionsUp,
		upChanged: func() {
			if m.ag != nil {
				m.ag.EnqueueAll()
			}
		},
	}
	w.run(ctx)
}

// run reports the sessions at once, then after every change signal and
// every interval without one, until ctx ends.
func (w *peerWatch) run(ctx context.Context) {
	t := w.clock.NewTimer()
	defer t.Stop()
	for {
		w.report(ctx)
		t.Reset(w.clock.Now().Add(w.every))
		select {
		case <-ctx.Done():
			return
		case <-w.src.Changes():
		case <-t.C():
		}
	}
}

// report reads the sessions once and passes them on; errors are logged.
func (w *peerWatch) report(ctx context.Context) {
	peers, err := w.src.Peers(ctx)
	if err != nil {
		w.logErr(ctx, "read BGP sessions", err)
		return
	}
	w.met.BGPPeers(metricPeers(peers))
	if w.up != nil {
		n := int32(established(peers))
		if w.up.Swap(n) != n && w.upChanged != nil {
			w.upChanged()
		}
	}
	if _, err := w.pub.Publish(ctx, nodePeers(peers)); err != nil {
		w.logErr(ctx, "publish BGP peer status", err)
		return
	}
	if w.lastErr != "" {
		w.log.Info("BGP peer status published again")
		w.lastErr = ""
	}
}

// logErr logs err unless ctx has ended or it repeats the last one.
func (w *peerWatch) logErr(ctx context.Context, what string, err error) {
	if ctx.Err() != nil || err.Error() == w.lastErr {
		return
	}
	w.lastErr = err.Error()
	w.log.Warn(what+" failed", "err", err)
}

// established counts the sessions that are established.
func established(peers []bgpspec.PeerState) int {
	n := 0
	for _, p := range peers {
		if p.State == "established" {
			n++
		}
	}
	return n
}

func metricPeers(peers []bgpspec.PeerState) []metrics.BGPPeer {
	out := make([]metrics.BGPPeer, 0, len(peers))
	for _, p := range peers {
		out = append(out, metrics.BGPPeer{Peer: p.Address.String(), State: p.State, PrefixesAdvertised: p.PrefixesSent, UpdatesSent: p.UpdatesSent})
	}
	return out
}

func nodePeers(peers []bgpspec.PeerState) []nodestatus.Peer {
	out := make([]nodestatus.Peer, 0, len(peers))
	for _, p := range peers {
		out = append(out, nodestatus.Peer{
			Peer: p.Address.String(), ASN: p.ASN, State: p.State, Since: p.Since,
			Prefixes: p.PrefixesSent, LastError: p.LastError,
		})
	}
	return out
}

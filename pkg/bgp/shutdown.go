package bgp

import (
	"context"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"
)

const (
	// drainTimeout bounds the wait for the withdrawals to be written.
	drainTimeout = 2 * time.Second
	// drainPoll is how often the sessions' sent-UPDATE counters are read
	// while waiting: GoBGP has no event for a message written.
	drainPoll = 2 * time.Millisecond
)

// shutdown withdraws every route, waits until each session that carried
// routes has written an UPDATE since (bounded by drainTimeout), then stops
// GoBGP, which closes every session with a Cease NOTIFICATION (graceful
// restart is not requested) and waits for its goroutines.
func (s *Speaker) shutdown(srv *server.BgpServer) {
	s.op.Lock()
	defer s.op.Unlock()
	s.srv = nil // callers only record from now on
	start := s.clk.Now()
	before := sentUpdates(srv, true)
	if err := srv.DeletePath(apiutil.DeletePathRequest{DeleteAll: true}); err != nil {
		s.log.Warn("withdrawing every route at shutdown", "err", err)
	}
	flushed := s.waitSent(srv, before, start.Add(drainTimeout))
	srv.Stop()
	s.log.Info("BGP speaker stopped", "withdrawnTo", len(before), "flushed", flushed,
		"took", s.clk.Now().Sub(start).Round(time.Millisecond))
}

// sentUpdates is the sent-UPDATE counter of each established session
// (only those that advertise routes when carrying is true).
func sentUpdates(srv *server.BgpServer, carrying bool) map[netip.Addr]uint64 {
	out := map[netip.Addr]uint64{}
	_ = srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: carrying}, func(p *api.Peer) {
		if p.GetState().GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED {
			return
		}
		if carrying && advertised(p) == 0 {
			return
		}
		if a, err := netip.ParseAddr(p.GetState().GetNeighborAddress()); err == nil {
			out[a] = p.GetState().GetMessages().GetSent().GetUpdate()
		}
	})
	return out
}

func advertised(p *api.Peer) int {
	n := 0
	for _, af := range p.GetAfiSafis() {
		n += int(af.GetState().GetAdvertised())
	}
	return n
}

// waitSent waits until every session in before has sent another UPDATE (or
// is gone), or until deadline; it reports whether all did.
func (s *Speaker) waitSent(srv *server.BgpServer, before map[netip.Addr]uint64, deadline time.Time) bool {
	t := s.clk.NewTimer()
	defer t.Stop()
	for {
		now := sentUpdates(srv, false)
		done := true
		for a, n := range before {
			if m, up := now[a]; up && m <= n {
				done = false
			}
		}
		if done {
			return true
		}
		if !s.clk.Now().Before(deadline) {
			s.log.Warn("BGP withdrawals not all sent before closing the sessions", "waited", drainTimeout)
			return false
		}
		t.Reset(s.clk.Now().Add(drainPoll))
		<-t.C()
	}
}

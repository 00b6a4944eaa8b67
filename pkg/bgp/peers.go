package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v4/api"
)

// Peers returns the state of every desired peer, sorted by address. While
// Run runs, PrefixesSent is read from GoBGP; before and after, sessions are
// "idle".
func (s *Speaker) Peers(ctx context.Context) ([]PeerState, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bgp: peers: %w", err)
	}
	counts, err := s.counters(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerState, 0, len(s.peers))
	for addr, p := range s.peers {
		st := s.status[addr]
		c := counts[addr]
		ps := PeerState{Address: addr, ASN: p.ASN, State: st.state, Since: st.since, LastError: st.lastError, PrefixesSent: c.prefixes, UpdatesSent: c.updates}
		if ps.State == "" || s.phase != running {
			ps.State = "idle"
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b PeerState) int { return a.Address.Compare(b.Address) })
	return out, nil
}

// peerCounters are a session's counters as GoBGP keeps them.
type peerCounters struct {
	prefixes int    // advertised now
	updates  uint64 // UPDATE messages sent
}

// counters reads every session's counters (empty when GoBGP is not
// running).
func (s *Speaker) counters(ctx context.Context) (map[netip.Addr]peerCounters, error) {
	s.op.Lock()
	defer s.op.Unlock()
	out := map[netip.Addr]peerCounters{}
	if s.srv == nil {
		return out, nil
	}
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.GetState().GetNeighborAddress()); err == nil {
			out[a.Unmap()] = peerCounters{prefixes: advertised(p), updates: p.GetState().GetMessages().GetSent().GetUpdate()}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: list peers: %w", err)
	}
	return out, nil
}

package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
)

// Applying the desired state to GoBGP. Every function here is called with
// s.op held and does nothing while GoBGP is not running.

// syncAll applies every desired peer and route (at start).
func (s *Speaker) syncAll(ctx context.Context) error {
	errs := []error{s.syncPeers(ctx)}
	s.mu.Lock()
	prefixes := make([]netip.Prefix, 0, len(s.routes))
	for p := range s.routes {
		prefixes = append(prefixes, p)
	}
	s.mu.Unlock()
	for _, p := range prefixes {
		errs = append(errs, s.syncRoute(ctx, p))
	}
	return errors.Join(errs...)
}

// syncPeers makes GoBGP's peers match the desired ones.
func (s *Speaker) syncPeers(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	s.mu.Lock()
	want, have := clonePeers(s.peers), clonePeers(s.applied)
	s.mu.Unlock()
	var errs []error
	for addr, p := range have {
		if w, ok := want[addr]; !ok || !peerEqual(w, p) {
			errs = append(errs, s.deletePeer(ctx, addr))
		}
	}
	for addr, p := range want {
		if h, ok := have[addr]; !ok || !peerEqual(h, p) {
			errs = append(errs, s.addPeer(ctx, p))
		}
	}
	return errors.Join(errs...)
}

// addPeer configures p, without BFD: armBFD adds it once the session is
// established (see bfd.go).
func (s *Speaker) addPeer(ctx context.Context, p Peer) error {
	unarmed := p
	unarmed.BFD = nil
	if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerConfig(unarmed, s.cfg.SourceAddress)}); err != nil {
		return fmt.Errorf("bgp: add peer %s: %w", p.Address, err)
	}
	s.mu.Lock()
	s.applied[p.Address] = p
	if _, ok := s.status[p.Address]; !ok {
		s.status[p.Address] = peerStatus{state: "idle"}
	}
	s.mu.Unlock()
	s.log.Info("BGP peer configured", "peer", p.Address, "asn", p.ASN, "port", p.Port, "bfd", p.BFD != nil, "md5", p.Password != "")
	return nil
}

// deletePeer removes a peer; GoBGP closes its session with a Cease.
func (s *Speaker) deletePeer(ctx context.Context, addr netip.Addr) error {
	if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		return fmt.Errorf("bgp: delete peer %s: %w", addr, err)
	}
	s.mu.Lock()
	delete(s.applied, addr)
	delete(s.bfdArmed, addr)
	if _, still := s.peers[addr]; !still {
		delete(s.status, addr)
	}
	s.mu.Unlock()
	s.log.Info("BGP peer removed", "peer", addr)
	s.notify()
	return nil
}

// syncRoute makes GoBGP's path for prefix p match the desired route.
func (s *Speaker) syncRoute(ctx context.Context, p netip.Prefix) error {
	if s.srv == nil {
		return nil
	}
	s.mu.Lock()
	want, ok := s.routes[p]
	have, had := s.sent[p]
	s.mu.Unlock()
	switch {
	case ok && had && want.Equal(have), !ok && !had:
		return nil
	case !ok:
		return s.deletePath(ctx, have)
	}
	reroute := had && !slices.Equal(want.Peers, have.Peers)
	if want.Restricted() || reroute {
		// The export policy must reject the route for other peers
		// before GoBGP propagates it.
		if err := s.setPolicies(ctx, want); err != nil {
			return err
		}
	}
	if err := s.addPath(ctx, want); err != nil {
		return err
	}
	if reroute {
		return s.resetOut(ctx)
	}
	return nil
}

func (s *Speaker) addPath(ctx context.Context, r Route) error {
	pa, err := path(r, false)
	if err != nil {
		return err
	}
	if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{pa}}); err != nil {
		return fmt.Errorf("bgp: announce %s: %w", r.Prefix, err)
	}
	s.mu.Lock()
	s.sent[r.Prefix] = r
	s.mu.Unlock()
	s.log.Debug("BGP route announced", "prefix", r.Prefix, "nextHop", r.NextHop, "peers", r.Peers)
	return nil
}

func (s *Speaker) deletePath(ctx context.Context, r Route) error {
	pa, err := path(r, true)
	if err != nil {
		return err
	}
	if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{pa}}); err != nil {
		return fmt.Errorf("bgp: withdraw %s: %w", r.Prefix, err)
	}
	s.mu.Lock()
	delete(s.sent, r.Prefix)
	s.mu.Unlock()
	s.log.Debug("BGP route withdrawn", "prefix", r.Prefix)
	if r.Restricted() {
		return s.setPolicies(ctx, Route{})
	}
	return nil
}

// resetOut re-evaluates the export policy for every established session
// (soft reset out): routes it now rejects are withdrawn, others sent.
func (s *Speaker) resetOut(ctx context.Context) error {
	req := &api.ResetPeerRequest{Address: "all", Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT}
	if err := s.srv.ResetPeer(ctx, req); err != nil {
		return fmt.Errorf("bgp: soft reset out: %w", err)
	}
	return nil
}

func clonePeers(m map[netip.Addr]Peer) map[netip.Addr]Peer {
	out := make(map[netip.Addr]Peer, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// peerEqual reports whether two peers have the same configuration.
func peerEqual(a, b Peer) bool {
	ab, bb := a.BFD, b.BFD
	a.BFD, b.BFD = nil, nil
	if a != b || (ab == nil) != (bb == nil) {
		return false
	}
	return ab == nil || *ab == *bb
}

package bgp

import (
	"context"
	"fmt"

	api "github.com/osrg/gobgp/v4/api"
)

// A peer's BFD is given to GoBGP only once its BGP session is first
// established. Routers such as FRR create their BFD session for a BGP
// neighbour when the session comes up, replacing the one they made at
// configuration time (new discriminator). A GoBGP BFD session already in
// Init, bound to the old discriminator, discards the new session's
// packets until it expires, and its expiry resets the BGP session (then
// idle for 30 s). Armed after establishment, GoBGP's BFD only ever sees the
// router's final session. A session that drops is redialled as a new
// GoBGP peer (redial.go), armed again once it is established.

// maintain arms BFD on newly established sessions and redials dropped
// ones (redial.go) until ctx ends (false) or the router id changes (true).
func (s *Speaker) maintain(ctx context.Context) (restart bool) {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.restartKick:
			return true
		case <-s.bfdKick:
			if err := s.armBFD(ctx); err != nil {
				s.log.Warn("enabling BFD", "err", err)
			}
		case <-s.redialKick:
			if err := s.redial(ctx); err != nil {
				s.log.Warn("redialling a dropped session", "err", err)
			}
		}
	}
}

// armBFD gives GoBGP the BFD settings of every established session that
// wants BFD and has not got it yet.
func (s *Speaker) armBFD(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.srv == nil {
		return nil
	}
	for _, p := range s.toArm() {
		req := &api.UpdatePeerRequest{Peer: peerConfig(p, s.cfg.SourceAddress)}
		if _, err := s.srv.UpdatePeer(ctx, req); err != nil {
			return fmt.Errorf("bgp: peer %s: enable BFD: %w", p.Address, err)
		}
		s.mu.Lock()
		s.bfdArmed[p.Address] = true
		s.mu.Unlock()
		s.log.Info("BFD enabled", "peer", p.Address, "rx", p.BFD.ReceiveInterval, "tx", p.BFD.TransmitInterval, "multiplier", p.BFD.DetectMultiplier)
	}
	return nil
}

// toArm lists the applied peers with BFD, established, not yet armed.
func (s *Speaker) toArm() []Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Peer
	for addr, p := range s.applied {
		if p.BFD != nil && !s.bfdArmed[addr] && s.status[addr].state == "established" {
			out = append(out, p)
		}
	}
	return out
}

package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// A session that drops after it was established is dialled again at
// once. GoBGP holds a dropped session idle for a fixed 5 s before its
// connect loop starts (then 1.5–2 s before the first dial), so a node
// whose session dropped while it was stalled, or cut off for longer than
// the hold time, would come back 6.5–7 s after the fault healed: longer
// than a lease, with no other node allowed to announce a Local Service. A
// new GoBGP peer starts with no idle hold. The speaker replaces the
// dropped peer with a new one, at most once per RedialEvery per peer, so
// a flapping session is dialled no faster than GoBGP would dial it.

// RedialEvery is the least time between two redials of one peer.
const RedialEvery = 5 * time.Second

// sessionDropped records that addr's established session went down, to
// be redialled by the maintenance loop; mu must be held.
func (s *Speaker) sessionDroppedLocked(addr netip.Addr) {
	s.dropped[addr] = true
	kick(s.redialKick)
}

// redialDue returns the dropped peers due for a redial now, and when the
// next of the others is due (zero: none waits).
func (s *Speaker) redialDue(now time.Time) (due []Peer, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr := range s.dropped {
		p, ok := s.applied[addr]
		if !ok || s.status[addr].state == "established" {
			delete(s.dropped, addr) // removed, replaced, or back by itself
			continue
		}
		at := s.redialed[addr].Add(RedialEvery)
		if now.Before(at) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		delete(s.dropped, addr)
		s.redialed[addr] = now
		s.redials++
		due = append(due, p)
	}
	return due, next
}

// redial replaces every dropped peer that is due with a new GoBGP peer
// (which dials at once) and arranges a kick for the ones that are not due
// yet.
func (s *Speaker) redial(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.srv == nil {
		return nil
	}
	due, next := s.redialDue(s.clk.Now())
	if !next.IsZero() {
		s.clk.AfterFunc(next, func() { kick(s.redialKick) })
	}
	for _, p := range due {
		s.log.Info("BGP session dropped: dialling the peer again now", "peer", p.Address)
		if err := s.deletePeer(ctx, p.Address); err != nil {
			return fmt.Errorf("bgp: redial: %w", err)
		}
		if err := s.addPeer(ctx, p); err != nil {
			return fmt.Errorf("bgp: redial: %w", err)
		}
	}
	return nil
}

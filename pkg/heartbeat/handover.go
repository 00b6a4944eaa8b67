package heartbeat

import (
	"time"

	"github.com/vigil-lb/vigil/pkg/election"
)

// Successor names the node that would take key at once were this node to
// release it now, for an opt-in rebalance: ok only while this node leads key
// on a fresh heartbeat (freshHoldLocked: the release will land), and a live
// node of this mode outranks this one for key — the node ranked first takes
// a released Service at rank 0, with no delay — and every live node has
// been alive for a LeaseDuration (a node just started may not campaign for
// the Service yet: released to it, the Service would wait for a rank delay
// and go to the next). As pkg/election's Successor.
func (e *Elector) Successor(key election.Key) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	if !e.freshHoldLocked(key, now) {
		return "", false
	}
	best := ""
	for name, n := range e.nodes {
		if name == e.cfg.Identity || !n.alive(now) {
			continue
		}
		if now.Sub(n.since) < e.cfg.LeaseDuration {
			return "", false // a node just started may not campaign yet: let it settle
		}
		if best == "" || election.Outranks(key, name, best) {
			best = name
		}
	}
	if best == "" || !election.Outranks(key, best, e.cfg.Identity) {
		return "", false
	}
	return best, true
}

// freshHoldLocked reports whether this node leads key on a heartbeat with
// no failed one after it, sent at most Interval + RetryPeriod ago (the next
// may be on its way), with no help from the LAN liveness. mu held.
func (e *Elector) freshHoldLocked(key election.Key, now time.Time) bool {
	c := e.cands[key]
	r, ok := e.svcs[key]
	switch {
	case c == nil || !c.held || !c.confirmed || !ok || !e.mine(r):
		return false
	case !e.beat.kept.IsZero() || e.beat.own == nil:
		return false // kept, or none accepted yet, or the last one failed
	}
	return now.Before(e.beat.term(e.cfg).Deadline) && now.Sub(e.beat.lastSent) <= e.cfg.Interval+e.cfg.RetryPeriod
}

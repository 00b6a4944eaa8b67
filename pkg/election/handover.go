package election

import "time"

// Successor names the node that would take key at once were this node to
// release it now, for an opt-in rebalance (a graceful handover to where the
// rendezvous ranking puts the Service). ok only when all of these hold:
//
//   - this node leads key and its last accepted renewal was sent at most two
//     retry periods ago, not kept by the LAN liveness: the API server
//     answers, so the release that hands it over will land;
//   - the node ranked first for key among the nodes this elector ranks
//     (Config.Peers and the live holders, this node left out) holds some
//     Lease this node sees unexpired — its agent runs, so it takes key at
//     rank 0, with no rank delay (a node known only from Config.Peers may
//     have no agent at all) and has for a LeaseDuration;
//   - that node outranks this one: otherwise key is where the ranking puts
//     it already.
//
// It needs RankDelay (without a ranking, whoever writes first wins a
// released Lease) and never says which Services to move: that is the
// caller's (pkg/agent) with what it knows of endpoints and addresses.
func (e *Elector) Successor(key Key) (string, bool) {
	if e.cfg.RankDelay <= 0 {
		return "", false
	}
	now := e.clock.Now()
	if !e.freshHold(key, now) {
		return "", false
	}
	best := ""
	for _, peer := range e.livePeers(now) {
		if peer != e.cfg.Identity && (best == "" || Outranks(key, peer, best)) {
			best = peer
		}
	}
	switch {
	case best == "" || !Outranks(key, best, e.cfg.Identity):
		return "", false // this node ranks first
	case !e.settled(best, now):
		return "", false
	}
	return best, true
}

// freshHold reports whether this node leads key on a renewal sent at most
// two retry periods ago, with no help from the LAN liveness.
func (e *Elector) freshHold(key Key, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.races[key]
	if r == nil || !r.held || !r.confirmed || !r.kept.IsZero() {
		return false
	}
	sent := r.term.Deadline.Add(-e.cfg.RenewDeadline)
	return now.Before(r.term.Deadline) && now.Sub(sent) <= 2*e.cfg.RetryPeriod
}

// settled reports whether node has held a Lease this node sees unexpired
// for at least a LeaseDuration (as of livePeers' last look, at most
// RankDelay ago): an agent just started may not campaign for every Service
// yet, and one released to it would wait a rank delay and go to the next.
func (e *Elector) settled(node string, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	since, ok := e.holders[node]
	return ok && now.Sub(since) >= e.cfg.LeaseDuration
}

package heartbeat

import (
	"time"

	"github.com/vigil-lb/vigil/pkg/election"
)

// Keeping through an API outage, with pkg/election's rules (docs/design.md):
//
//   - Holder rule: this node's heartbeat term — hence every Service it
//     leads — is kept past its deadline while Config.Keeper vouches:
//     Deadline since+T, Expiry since+LeaseDuration, re-checked at each
//     deadline and at once on KeeperChanged. A kept term only continues an
//     unbroken one; a heartbeat accepted after it is no lapse (nobody could
//     write meanwhile), one accepted after it ended is.
//   - Follower rule: no observation counts from before the Keeper's current
//     epoch began (freshFrom), and no Service Lease is written unless this
//     node reaches the API in the epoch its decision was made in.

// termLocked is this node's heartbeat term as of now, extended as far as
// the Keeper vouches, and whether it is current; mu held.
func (e *Elector) termLocked(now time.Time) (election.Term, bool) {
	t := e.beat.term(e.cfg)
	alive := !e.beat.lastSent.IsZero() && now.Before(t.Deadline)
	if !alive && !e.beat.kept.IsZero() && now.Before(e.beat.keptTerm.Deadline) {
		t, alive = e.beat.keptTerm, true
	}
	if !alive || e.cfg.Keeper == nil {
		return t, alive
	}
	if since, ok := e.cfg.Keeper.Vouched(); ok {
		if d := since.Add(e.cfg.Keeper.Fresh()); d.After(t.Deadline) {
			t.Deadline = d
		}
		if x := since.Add(e.cfg.LeaseDuration); x.After(t.Expiry) {
			t.Expiry = x
		}
	}
	return t, now.Before(t.Deadline)
}

// keepLocked keeps the term past a deadline that just passed if the Keeper
// vouches, re-arming the deadline timer; mu held. The term must have been
// current until now (the deadline timer calls it).
func (e *Elector) keepLocked(now time.Time) bool {
	if e.cfg.Keeper == nil || e.beat.lastSent.IsZero() {
		return false
	}
	since, ok := e.cfg.Keeper.Vouched()
	deadline := since.Add(e.cfg.Keeper.Fresh())
	if !ok || !now.Before(deadline) {
		return false
	}
	if e.beat.kept.IsZero() {
		e.beat.kept = now
		e.log.Warn("API server away for every agent: keeping every Service past the heartbeat deadline")
	}
	expiry := since.Add(e.cfg.LeaseDuration)
	for _, x := range []time.Time{e.beat.keptTerm.Expiry, e.beat.term(e.cfg).Expiry} {
		if x.After(expiry) {
			expiry = x
		}
	}
	e.beat.keptTerm = election.Term{Deadline: deadline, Expiry: expiry}
	if e.beat.deadline != nil {
		e.beat.deadline.Stop()
	}
	e.beat.deadline = e.clock.AfterFunc(deadline, e.deadlinePassed)
	return true
}

// endKeepLocked ends a kept term and returns the Services it kept and for
// how long (nil: none); mu held.
func (e *Elector) endKeepLocked(now time.Time) *keptReport {
	if e.beat.kept.IsZero() {
		return nil
	}
	r := &keptReport{held: now.Sub(e.beat.kept)}
	for k, c := range e.cands {
		if c.held && c.confirmed {
			r.keys = append(r.keys, k)
		}
	}
	e.beat.kept, e.beat.keptTerm = time.Time{}, election.Term{}
	return r
}

type keptReport struct {
	keys []election.Key
	held time.Duration
}

// reportKept tells Config.Kept about every Service of a kept term that a
// heartbeat renewed.
func (e *Elector) reportKept(r *keptReport) {
	if r == nil {
		return
	}
	e.log.Info("heartbeat renewed after being kept without the API server", "kept", r.held, "services", len(r.keys))
	if e.cfg.Kept == nil {
		return
	}
	for _, k := range r.keys {
		e.cfg.Kept(k, r.held)
	}
}

// KeeperChanged re-checks a kept term at once (the Keeper's change
// signal): it ends now if the Keeper no longer vouches, else a heartbeat
// is sent now.
func (e *Elector) KeeperChanged() {
	if e.cfg.Keeper == nil {
		return
	}
	e.mu.Lock()
	kept := !e.beat.kept.IsZero()
	_, vouched := e.cfg.Keeper.Vouched()
	if kept && !vouched {
		if e.beat.deadline != nil {
			e.beat.deadline.Stop()
		}
		e.endKeepLocked(e.clock.Now())
	}
	e.mu.Unlock()
	switch {
	case kept && !vouched:
		e.log.Warn("LAN liveness no longer vouches: stepping down")
		e.deadlinePassed()
	case kept:
		select {
		case e.beatNow <- struct{}{}:
		default:
		}
	}
}

// KeptCount is how many Services this node leads without the API server.
func (e *Elector) KeptCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.beat.kept.IsZero() {
		return 0
	}
	n := 0
	for _, c := range e.cands {
		if c.held && c.confirmed {
			n++
		}
	}
	return n
}

// epoch is the Keeper's current epoch (0 without one).
func (e *Elector) epoch() uint64 {
	if e.cfg.Keeper == nil {
		return 0
	}
	ep, _, _ := e.cfg.Keeper.Epoch()
	return ep
}

// followerMayWrite: this node reaches the API and has not lost and
// regained it since epoch.
func (e *Elector) followerMayWrite(epoch uint64) bool {
	if e.cfg.Keeper == nil {
		return true
	}
	ep, _, reachable := e.cfg.Keeper.Epoch()
	return reachable && ep == epoch
}

// freshFrom is at as the follower rule counts an observation: never before
// the current epoch began.
func (e *Elector) freshFrom(at time.Time) time.Time {
	if e.cfg.Keeper == nil {
		return at
	}
	if _, from, _ := e.cfg.Keeper.Epoch(); at.Before(from) {
		return from
	}
	return at
}

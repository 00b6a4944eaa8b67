package election

import "time"

// Keeper is the LAN liveness as the elector needs it (pkg/members
// implements it; docs/design.md, "Keeping VIPs through an API outage").
type Keeper interface {
	// Vouched is ok while every agent of the cluster has told this node,
	// in a report sent after since (this node's clock), that it cannot
	// reach the API server (so none of them regained it before since).
	Vouched() (since time.Time, ok bool)
	// Epoch counts this node's regains of the API server: from is when
	// the current one began; reachable is whether this node reports that
	// it reaches the API now.
	Epoch() (epoch uint64, from time.Time, reachable bool)
	// Fresh is T: a holder keeps until since + T at most.
	Fresh() time.Duration
}

// The holder rule: a hold whose renew deadline passed is kept (Deadline
// since+T, Expiry since+LeaseDuration) while the Keeper vouches; it steps
// down the moment it does not (KeeperChanged, or the deadline timer). A
// kept hold is only ever the continuation of an unbroken one: once it
// ended, only a new acquisition (a write the API accepted) holds again.
//
// The follower rule: no observation counts from before the current
// epoch's start (fresh), and no acquisition is written unless this node
// reaches the API in the epoch its step read the Leases in (followerMayWrite).

// keepLocked extends r's term past its passed deadline if the Keeper
// vouches; mu must be held. It reports whether r is kept, and whether it
// has just started to be.
func (e *Elector) keepLocked(r *race) (kept, started bool) {
	if e.cfg.Keeper == nil {
		return false, false
	}
	since, ok := e.cfg.Keeper.Vouched()
	now := e.clock.Now()
	deadline := since.Add(e.cfg.Keeper.Fresh())
	if !ok || !now.Before(deadline) {
		return false, false
	}
	started = r.kept.IsZero()
	if started {
		r.kept = now
	}
	expiry := since.Add(e.cfg.LeaseDuration)
	if r.term.Expiry.After(expiry) {
		expiry = r.term.Expiry
	}
	r.term = Term{Deadline: deadline, Expiry: expiry}
	if r.stepDown != nil {
		r.stepDown.Stop()
	}
	r.stepDown = e.clock.AfterFunc(deadline, func() { e.deadlinePassed(r) })
	return true, started
}

// vouchedLocked is t extended as far as the Keeper vouches right now (t
// itself without a vouch); mu must be held. Term reports it even before
// the renew deadline passed, so a holder's kernel address lifetime is
// extended before it would lapse at the end of its last renewal's term.
func (e *Elector) vouchedLocked(t Term) Term {
	if e.cfg.Keeper == nil {
		return t
	}
	since, ok := e.cfg.Keeper.Vouched()
	if !ok {
		return t
	}
	if d := since.Add(e.cfg.Keeper.Fresh()); d.After(t.Deadline) {
		t.Deadline = d
	}
	if x := since.Add(e.cfg.LeaseDuration); x.After(t.Expiry) {
		t.Expiry = x
	}
	return t
}

// endKeepLocked clears r's kept mark and returns how long it was kept
// (ok false: it was not); mu must be held.
func (e *Elector) endKeepLocked(r *race) (time.Duration, bool) {
	if r.kept.IsZero() {
		return 0, false
	}
	d := e.clock.Now().Sub(r.kept)
	r.kept = time.Time{}
	return d, true
}

// KeeperChanged re-checks every kept hold at once; call it on the Keeper's
// change signal (a report saying "reachable", an agent heard for the first
// time, this node regaining the API). A hold the Keeper no longer vouches
// for steps down now; the others try to renew now.
func (e *Elector) KeeperChanged() {
	if e.cfg.Keeper == nil {
		return
	}
	e.mu.Lock()
	var lost, kept []*race
	for _, r := range e.races {
		if !r.held || r.kept.IsZero() {
			continue
		}
		if _, ok := e.cfg.Keeper.Vouched(); !ok {
			e.setLeading(r, false, Term{})
			lost = append(lost, r)
		} else {
			kept = append(kept, r)
		}
	}
	e.mu.Unlock()
	for _, r := range kept {
		wakeUp(r)
	}
	for _, r := range lost {
		e.log.Warn("LAN liveness no longer vouches, withdrawing", "lease", r.key.String())
		e.notify(r.key)
		wakeUp(r)
	}
}

// KeptCount is how many Leases this node holds without the API server.
func (e *Elector) KeptCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, r := range e.races {
		if r.held && !r.kept.IsZero() {
			n++
		}
	}
	return n
}

// epoch is the Keeper's current epoch (0 without a Keeper).
func (e *Elector) epoch() uint64 {
	if e.cfg.Keeper == nil {
		return 0
	}
	ep, _, _ := e.cfg.Keeper.Epoch()
	return ep
}

// followerMayWrite reports whether an acquisition decided in epoch may be
// written: this node reaches the API server and has not lost and regained
// it since.
func (e *Elector) followerMayWrite(epoch uint64) bool {
	if e.cfg.Keeper == nil {
		return true
	}
	ep, _, reachable := e.cfg.Keeper.Epoch()
	return reachable && ep == epoch
}

// asSeen is o as this node counts it: fresh (below), and a record written
// by an earlier process of this agent (same identity, another instance)
// held for at most two retry periods past its sighting. A predecessor that
// still runs (an overlapping restart) renews every retry period, so it
// keeps its hold; one that exited is gone, and waiting out its whole
// lease would only keep its Services dark after a restart (a Local
// Service whose one endpoint is on this node has no other candidate).
// Either way the Lease names this node: two nodes are never involved. A
// record without an instance id (kube-vip's) is waited out in full.
func (e *Elector) asSeen(o observation) observation {
	o = e.fresh(o)
	if o.holder == e.cfg.Identity && o.instance != "" && o.instance != e.cfg.Instance {
		o.duration = min(o.duration, 2*e.cfg.RetryPeriod)
	}
	return o
}

// fresh is o as the follower rule counts it: never observed before the
// current epoch began.
func (e *Elector) fresh(o observation) observation {
	if e.cfg.Keeper == nil {
		return o
	}
	if _, from, _ := e.cfg.Keeper.Epoch(); o.at.Before(from) {
		o.at = from
	}
	return o
}

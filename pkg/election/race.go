package election

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// view is what one step of a race knows: the cached record and this
// node's state, read together.
type view struct {
	cached *coordinationv1.Lease // nil: no such Lease
	obs    observation           // the cached record as this node saw it first
	// held and confirmed as of the start of the step.
	held, confirmed bool
	// conflicted: a write of ours lost a 409 on exactly this record.
	conflicted bool
}

// step does one round of the race and returns when to look again (zero:
// only when the informer wakes it).
func (e *Elector) step(ctx context.Context, r *race) time.Time {
	now := e.clock.Now()
	cached, err := e.lister.Leases(r.key.Namespace).Get(r.key.Name)
	switch {
	case apierrors.IsNotFound(err) && r.foreign != nil:
		e.readForeign(ctx, r) // the informer never shows it: read it again
		cached = r.foreign
	case apierrors.IsNotFound(err):
		cached = nil
	case err != nil:
		e.log.Warn("lease cache read failed", "lease", r.key.String(), "err", err)
		return now.Add(e.cfg.RetryPeriod)
	}
	r.epoch = e.epoch()
	v := e.look(r, cached, now)
	if v.held {
		return e.hold(ctx, r, v, now)
	}
	return e.contend(ctx, r, v, now)
}

// look reads r's state and the sighting of cached under the lock, and
// confirms a hold the informer now shows.
func (e *Elector) look(r *race, cached *coordinationv1.Lease, now time.Time) view {
	e.mu.Lock()
	delete(e.waiting, r) // acquire puts it back if it still waits for room
	v := view{cached: cached, held: r.held, confirmed: r.confirmed}
	if cached != nil {
		// The lister is updated before the event handlers run: a record in
		// the cache that has not been observed yet is a fresh sighting, as
		// of now, never an expired one. (The handler records it.)
		v.obs = observe(cached, now)
		if o, seen := e.observed[r.key]; seen && o.sameRecord(v.obs) {
			v.obs = o
		}
		v.obs = e.asSeen(v.obs)
	}
	v.conflicted = r.conflict != nil && *r.conflict == resourceVersion(cached)
	// Leading starts only once the informer shows our own write: then this
	// node's cache has every Lease write that came before it, which is what
	// lets callers compare holders of related keys safely.
	confirm := r.held && !r.confirmed && cached != nil && r.lease != nil && cached.ResourceVersion == r.lease.ResourceVersion
	r.confirmed = r.confirmed || confirm
	e.mu.Unlock()
	if confirm {
		e.log.Info("leading", "lease", r.key.String())
		e.notify(r.key)
	}
	return v
}

func resourceVersion(l *coordinationv1.Lease) string {
	if l == nil {
		return ""
	}
	return l.ResourceVersion
}

// hold is a step while this node holds the Lease: give it up if someone
// else took or deleted it, else renew it when due.
func (e *Elector) hold(ctx context.Context, r *race, v view, now time.Time) time.Time {
	switch {
	case v.cached == nil && v.confirmed:
		e.lose(r, "lease deleted") // by someone else: stop at once
		return now
	case v.cached == nil:
		return now.Add(e.cfg.RetryPeriod) // our create has not reached the informer yet
	case v.confirmed && !e.mine(v.obs):
		// The informer showed our write before this one: it is newer.
		e.lose(r, "lease taken by "+v.obs.holder)
		return now
	}
	if now.Before(r.renewAt) {
		return r.renewAt
	}
	return e.write(ctx, r, r.lease, false)
}

// contend is a step while this node does not hold the Lease: take it if it
// is free, expired by our own observation, or ours from before; else wait
// for its expiry (or the informer).
func (e *Elector) contend(ctx context.Context, r *race, v view, now time.Time) time.Time {
	switch {
	case v.conflicted:
		return time.Time{} // never retry over a record we lost a 409 on
	case v.cached != nil && v.cached == r.foreign:
		return e.contendForeign(ctx, r, v, now)
	case v.cached == nil:
		return e.acquire(ctx, r, nil, "", now)
	case v.obs.holder != "" && !e.mine(v.obs) && v.cached.Annotations[ModeAnnotation] == ModeNode:
		// Held in node-heartbeat mode: its record is not renewed, so its age
		// says nothing. Every agent must run one mode; never guess.
		e.log.Error("election mismatch: lease held by a node-heartbeat-mode agent, this agent runs per-Service mode",
			"lease", r.key.String(), "holder", v.obs.holder)
		return time.Time{}
	case valid(v.obs, now) && !e.mine(v.obs):
		r.freeAt = time.Time{}
		e.mu.Lock()
		e.stopTellLocked(r) // a later wait for room is told anew
		e.mu.Unlock()
		return v.obs.expiry()
	default:
		return e.acquire(ctx, r, v.cached, v.obs.holder, now)
	}
}

// acquire takes a free (or expired) Lease over base once this node's rank
// delay has passed and an acquisition slot is free (spread.go; both off by
// default); gone is the holder whose hold ended.
func (e *Elector) acquire(ctx context.Context, r *race, base *coordinationv1.Lease, gone string, now time.Time) time.Time {
	if r.freeAt.IsZero() {
		r.freeAt = now
	}
	if at := e.rankWait(r.key, gone, r.freeAt, now); now.Before(at) {
		return at
	}
	ok, retry := e.mayAcquire(r, now)
	if !ok {
		return retry
	}
	defer e.acquired()
	return e.write(ctx, r, base, true)
}

// lose drops r's hold and the record it was based on, and notifies if it
// was held.
func (e *Elector) lose(r *race, why string) {
	e.mu.Lock()
	was := r.held
	e.setLeading(r, false, Term{})
	e.mu.Unlock()
	r.lease = nil
	if was {
		e.log.Info("lost lease", "lease", r.key.String(), "reason", why)
		e.notify(r.key)
	}
}

// setLeading updates r's holding state; mu must be held. A held race gets a
// timer at its deadline that drops leadership and notifies.
func (e *Elector) setLeading(r *race, held bool, term Term) {
	if r.stepDown != nil {
		r.stepDown.Stop()
		r.stepDown = nil
	}
	e.countHoldLocked(r, held)
	r.held, r.term = held, term
	if !held {
		r.confirmed = false
		r.kept = time.Time{}
		return
	}
	r.stepDown = e.clock.AfterFunc(term.Deadline, func() { e.deadlinePassed(r) })
}

// deadlinePassed steps down if r's term ran out without a renewal.
func (e *Elector) deadlinePassed(r *race) {
	e.mu.Lock()
	lost := r.held && !e.clock.Now().Before(r.term.Deadline)
	if lost {
		if kept, started := e.keepLocked(r); kept {
			e.mu.Unlock()
			if started {
				e.log.Warn("API server away for every agent: keeping lease past its renew deadline", "lease", r.key.String())
			}
			return
		}
		e.countHoldLocked(r, false)
		r.held, r.confirmed, r.kept = false, false, time.Time{}
	}
	e.mu.Unlock()
	if lost {
		e.log.Warn("lease not renewed in time, stepping down", "lease", r.key.String())
		e.notify(r.key)
		wakeUp(r)
	}
}

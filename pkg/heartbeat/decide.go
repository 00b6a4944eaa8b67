package heartbeat

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/election"
)

// action is what a step decided to do outside the lock.
type action int

const (
	wait      action = iota // nothing now (a timer or the informer wakes the key)
	reassert                // the Lease names us but this term has not confirmed it: write it again
	checkNode               // the holder's node Lease ran out by our observation: GET it
	acquire                 // take the free Lease
)

// decision is one step's verdict with what it was based on.
type decision struct {
	act    action
	cached *coordinationv1.Lease
	holder string // checkNode: whose node Lease
	rec    *nodeRec
	notify bool // leadership changed
}

// step decides key once and carries the decision out.
func (e *Elector) step(ctx context.Context, key election.Key) {
	cached, err := e.lister.Leases(key.Namespace).Get(key.Name)
	if err != nil && !apierrors.IsNotFound(err) {
		e.log.Warn("lease cache read failed", "lease", key.String(), "err", err)
		return
	}
	if apierrors.IsNotFound(err) {
		cached = nil
	}
	epoch := e.epoch()
	d := e.decide(key, cached, e.clock.Now())
	if d.notify {
		e.notify(key)
	}
	switch {
	case (d.act == reassert || d.act == acquire) && !e.followerMayWrite(epoch):
		e.retry(key) // the follower rule (keep.go)
	case d.act == reassert:
		e.write(ctx, key, cached, true)
	case d.act == checkNode:
		e.checkNode(ctx, key, d.holder, d.rec)
	case d.act == acquire:
		e.write(ctx, key, cached, false)
	}
}

// decide looks at key's cached Lease as of now.
func (e *Elector) decide(key election.Key, cached *coordinationv1.Lease, now time.Time) decision {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.cands[key]
	if c == nil || !e.running {
		return decision{}
	}
	if e.staleLocked(key, cached) {
		return decision{} // the informer's event since has queued key again
	}
	d := decision{cached: cached}
	// Not stale: the record the handler stored is exactly cached's (none
	// when cached is nil), with when it was first seen so.
	r := e.svcs[key]
	switch {
	case cached != nil && e.mine(r):
		return e.decideMine(c, cached, now, d)
	case cached != nil && r.holder != "":
		d.notify = e.loseLocked(key, c, "lease names "+r.holder)
		return e.decideOther(key, c, r, now, d)
	case c.held && c.confirmed:
		d.notify = e.loseLocked(key, c, "lease released or deleted by another")
		return e.decideFree(key, c, cached, r.releasedBy, now, d)
	case c.held:
		return d // our create has not reached the informer yet
	}
	return e.decideFree(key, c, cached, r.releasedBy, now, d)
}

// staleLocked reports whether the cached Lease step read is not the one
// the informer's handler last delivered: read before an event the handler
// has since handled (a write of ours, confirmed meanwhile, would look
// deleted by another) or after one it has not handled yet. Either way that
// event queues key again. mu held.
func (e *Elector) staleLocked(key election.Key, cached *coordinationv1.Lease) bool {
	seen, ok := e.svcs[key]
	if cached == nil {
		return ok
	}
	return !ok || seen.rv != cached.ResourceVersion
}

// decideMine: the Lease names this instance.
func (e *Elector) decideMine(c *cand, cached *coordinationv1.Lease, now time.Time, d decision) decision {
	switch {
	case c.held && !c.confirmed && cached.ResourceVersion == c.rv:
		c.confirmed = true
		d.notify = true
		return d
	case c.held:
		return d
	case e.aliveLocked(now):
		d.act = reassert // after a lapse: a takeover meanwhile makes this 409
	}
	return d
}

// decideOther: another node (or a predecessor of ours) holds the Lease.
func (e *Elector) decideOther(key election.Key, c *cand, r svcRec, now time.Time, d decision) decision {
	dead, until := e.holderDead(r, now)
	if !dead {
		c.freeAt = time.Time{}
		e.after(key, c, until)
		return d
	}
	if n := e.nodes[r.holder]; n != nil && r.mode == Mode && n.instance == r.instance && !n.deadConfirmed {
		d.act, d.holder, d.rec = checkNode, r.holder, n
		return d
	}
	return e.decideFree(key, c, d.cached, r.holder, now, d)
}

// holderDead reports whether r's holder has lost it by this node's
// observation, and else until when it holds it. A per-Service-mode record
// lives by its own renewals (and is reported). A node-mode holder lives as
// long as its node Lease, with the instance that wrote r, changes within
// its LeaseDuration — and never less than a LeaseDuration from this node's
// sighting of r itself: a holder writes its Service Lease only while its
// heartbeat is current, so a record newer than the node Lease record held
// here proves that record stale (after an API server restart the relist
// delivers kubevip-* Leases before vigil-heartbeat-* ones, and a holder
// that re-asserted its Services must not look dead by its old heartbeat).
// For the same reason a node Lease of another instance says the writer of
// r is gone only if it was seen with or after r. mu held.
func (e *Elector) holderDead(r svcRec, now time.Time) (bool, time.Time) {
	if r.mode != Mode {
		until := e.freshFrom(r.at).Add(r.dur)
		return !now.Before(until), until
	}
	until := e.freshFrom(r.at).Add(e.cfg.LeaseDuration)
	switch n := e.nodes[r.holder]; {
	case n == nil:
		// no heartbeat at all: as long as a lease from our sighting
	case n.instance != r.instance && !n.at.Before(r.at):
		return true, now // its writer is gone: a new instance runs on that node
	case n.instance == r.instance:
		until = later(until, e.freshFrom(n.at).Add(n.dur))
	}
	return !now.Before(until), until
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// decideFree: nobody (alive) holds the Lease. The node ranked r among the
// live nodes takes it after r × RankDelay; only while this node's own
// heartbeat is current.
func (e *Elector) decideFree(key election.Key, c *cand, cached *coordinationv1.Lease, dead string, now time.Time, d decision) decision {
	if c.freeAt.IsZero() {
		c.freeAt = now
	}
	rv := ""
	if cached != nil {
		rv = cached.ResourceVersion
	}
	switch {
	case c.conflict != nil && *c.conflict == rv:
		return d // never write over a record we lost a 409 on
	case !e.aliveLocked(now):
		return d // the next accepted heartbeat re-decides every key
	}
	at := c.freeAt.Add(time.Duration(e.rankLocked(key, dead, now)) * e.cfg.RankDelay)
	if now.Before(at) {
		e.after(key, c, at)
		return d
	}
	d.act = acquire
	return d
}

// loseLocked drops this node's hold of key; it reports whether the node
// was leading it. mu held.
func (e *Elector) loseLocked(key election.Key, c *cand, why string) bool {
	was := c.held && c.confirmed
	c.held, c.confirmed = false, false
	if was {
		e.log.Info("lost lease", "lease", key.String(), "reason", why)
	}
	return was
}

// checkNode reads holder's node Lease afresh before a takeover: a watch
// that stalled must not make a live holder look dead. If it still shows
// the record observed a LeaseDuration ago, the holder is dead (shared by
// every Service it held); otherwise the new record is observed now.
func (e *Elector) checkNode(ctx context.Context, key election.Key, holder string, rec *nodeRec) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	l, err := e.client.Leases(e.cfg.NodeNamespace).Get(ctx, NodeLeaseName(holder), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		e.observeNode(holder, nil)
	case err != nil:
		e.log.Warn("node lease read failed", "node", holder, "err", err)
		e.retry(key)
		return
	default:
		fresh := parseNode(l, e.clock.Now())
		e.mu.Lock()
		if e.nodes[holder] == rec && fresh.same(rec) {
			rec.deadConfirmed = true
		}
		e.mu.Unlock()
		if !fresh.same(rec) {
			e.log.Info("node lease changed behind the watch: holder alive", "node", holder)
			e.observeNode(holder, fresh)
		}
	}
	e.queue.Add(key)
}

// retry re-decides key after RetryPeriod.
func (e *Elector) retry(key election.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.cands[key]; c != nil {
		e.after(key, c, e.clock.Now().Add(e.cfg.RetryPeriod))
	}
}

package election

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/client-go/tools/cache"
)

// observation is when this node last saw a Lease record change, by its own
// clock.
type observation struct {
	holder, instance string
	renew            time.Time
	transitions      int32
	duration         time.Duration
	at               time.Time
}

func (o observation) sameRecord(p observation) bool {
	return o.holder == p.holder && o.instance == p.instance && o.renew.Equal(p.renew) && o.transitions == p.transitions
}

// expiry is when the holder of o loses it by this node's clock: never
// computed from renewTime, which another clock wrote.
func (o observation) expiry() time.Time { return o.at.Add(o.duration) }

// valid reports whether o names a live holder at time now.
func valid(o observation, now time.Time) bool {
	return o.holder != "" && now.Before(o.expiry())
}

func (e *Elector) mine(o observation) bool {
	return o.holder == e.cfg.Identity && o.instance == e.cfg.Instance
}

func toLease(obj any) (*coordinationv1.Lease, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	l, ok := obj.(*coordinationv1.Lease)
	return l, ok
}

func observe(l *coordinationv1.Lease, at time.Time) observation {
	o := observation{instance: l.Annotations[InstanceAnnotation], at: at}
	if l.Spec.HolderIdentity != nil {
		o.holder = *l.Spec.HolderIdentity
	}
	if l.Spec.RenewTime != nil {
		o.renew = l.Spec.RenewTime.Time
	}
	if l.Spec.LeaseTransitions != nil {
		o.transitions = *l.Spec.LeaseTransitions
	}
	if l.Spec.LeaseDurationSeconds != nil {
		o.duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return o
}

// observe handles a Lease change seen through the informer: it records it,
// wakes the race for it and notifies if the holder changed.
func (e *Elector) observe(obj any, deleted bool) {
	l, ok := toLease(obj)
	if !ok {
		return
	}
	key := Key{l.Namespace, l.Name}
	var o *observation
	if !deleted {
		v := observe(l, e.clock.Now())
		o = &v
	}
	holderChanged, r := e.record(key, o, l.ResourceVersion)
	if r != nil {
		wakeUp(r)
	}
	if holderChanged {
		e.notify(key)
	}
}

// record stores o (nil: deleted), the record at resourceVersion rv, as the
// latest sighting of key, re-arms its expiry notification, and returns
// whether the holder changed and the race for key, if any.
func (e *Elector) record(key Key, o *observation, rv string) (holderChanged bool, r *race) {
	e.mu.Lock()
	defer e.mu.Unlock()
	prev, had := e.observed[key]
	if t := e.expiries[key]; t != nil {
		t.Stop()
		delete(e.expiries, key)
	}
	r = e.races[key]
	if r != nil && r.conflict != nil && (o == nil || *r.conflict != rv) {
		r.conflict = nil // a newer record than the one we lost on: look again
	}
	if o == nil {
		delete(e.observed, key)
		return true, r
	}
	if had && o.sameRecord(prev) {
		o.at = prev.at // unchanged record: keep the first sighting
	}
	e.observed[key] = *o
	if o.holder != "" && !e.mine(*o) && e.phase != stopped {
		seen := *o
		e.expiries[key] = e.clock.AfterFunc(e.asSeen(seen).expiry(), func() { e.expired(key, seen) })
	}
	return !had || prev.holder != o.holder || prev.instance != o.instance, r
}

// expired notifies that o, still the latest record of key, has run out.
func (e *Elector) expired(key Key, o observation) {
	e.mu.Lock()
	cur, ok := e.observed[key]
	still := ok && cur.sameRecord(o) && cur.at.Equal(o.at) && e.phase != stopped
	if still {
		delete(e.expiries, key)
	}
	e.mu.Unlock()
	if still {
		e.notify(key)
	}
}

// wakeUp makes r look at its Lease again.
func wakeUp(r *race) { r.run.kick() }

package election

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// write creates, acquires or renews the Lease: base is the record to
// update (nil: create), acquire is false for a renewal of our own hold. It
// returns when to look again: after RetryPeriod, or (zero) only once the
// informer shows a newer record than the one the write lost a 409 on.
func (e *Elector) write(ctx context.Context, r *race, base *coordinationv1.Lease, acquire bool) time.Time {
	sent := e.clock.Now()
	if acquire && !e.followerMayWrite(r.epoch) {
		return sent.Add(e.cfg.RetryPeriod) // the follower rule (keep.go)
	}
	out, err := e.send(ctx, r.key, e.holding(r.key, base, acquire, sent), base == nil, sent)
	switch {
	case err == nil:
		if !acquire {
			e.renewed(sent, nil)
		}
		e.accepted(r, out, sent)
		return r.renewAt
	case base == nil && apierrors.IsAlreadyExists(err), base != nil && base == r.foreign && apierrors.IsConflict(err):
		// Perhaps a Lease another controller wrote (or renewed), which the
		// informer will never show: read it.
		e.readForeign(ctx, r)
		if r.foreign != nil {
			return e.clock.Now()
		}
		e.conflicted(r, base)
		return time.Time{}
	case !acquire && apierrors.IsConflict(err) && e.ownLanded(ctx, r):
		return e.clock.Now() // renew at once over our own landed write
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
		e.conflicted(r, base)
		return time.Time{}
	default:
		// The deadline timer steps down if no renewal gets through.
		e.log.Warn("lease write failed", "lease", r.key.String(), "err", err)
		if !acquire {
			e.renewed(sent, err)
		}
	}
	return sent.Add(e.cfg.RetryPeriod)
}

// holding returns the record that makes this node the holder of key as of
// sent, built on base (nil: a new Lease).
func (e *Elector) holding(key Key, base *coordinationv1.Lease, acquire bool, sent time.Time) *coordinationv1.Lease {
	micro := metav1.NewMicroTime(sent)
	var l *coordinationv1.Lease
	if base == nil {
		zero := int32(0)
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace},
			Spec:       coordinationv1.LeaseSpec{AcquireTime: &micro, LeaseTransitions: &zero},
		}
	} else {
		l = base.DeepCopy()
	}
	if acquire && base != nil && !e.mine(observe(base, sent)) {
		e.transition(l, micro)
	}
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Labels[ManagedByLabel] = ManagedByValue
	l.Annotations[InstanceAnnotation] = e.cfg.Instance
	id := e.cfg.Identity
	dur := max(int32(e.cfg.LeaseDuration/time.Second), 1)
	l.Spec.HolderIdentity = &id
	l.Spec.LeaseDurationSeconds = &dur
	l.Spec.RenewTime = &micro
	return l
}

// transition counts a change of holder (a release in between counts as
// none) and stamps the acquire time.
func (e *Elector) transition(l *coordinationv1.Lease, at metav1.MicroTime) {
	t := int32(0)
	if l.Spec.LeaseTransitions != nil {
		t = *l.Spec.LeaseTransitions
	}
	if h := l.Spec.HolderIdentity; (h != nil && *h != "") || t > 0 {
		t++
	}
	l.Spec.LeaseTransitions = &t
	l.Spec.AcquireTime = &at
}

// send creates or updates l, giving up at sent + RenewDeadline: an answer
// after that is useless to a holder.
func (e *Elector) send(ctx context.Context, key Key, l *coordinationv1.Lease, create bool, sent time.Time) (*coordinationv1.Lease, error) {
	ctx, cancel := context.WithCancel(ctx)
	giveUp := e.clock.AfterFunc(sent.Add(e.cfg.RenewDeadline), cancel)
	defer giveUp.Stop()
	defer cancel()
	leases := e.client.Leases(key.Namespace)
	if create {
		return leases.Create(ctx, l, metav1.CreateOptions{})
	}
	return leases.Update(ctx, l, metav1.UpdateOptions{})
}

// ownLanded reports whether a renewal's 409 came from a write of our own:
// one this process gave up on (its answer came too late, e.g. while etcd
// was stopped) that the API server applied anyway. A fresh read that still
// names this node and this instance can only be such a write; it becomes
// the base of the next renewal, and the term stays as it was (the landed
// write's send time is not known). Anything else (including the record
// we wrote over, unchanged) is someone else's write or no write at all.
func (e *Elector) ownLanded(ctx context.Context, r *race) bool {
	ctx, cancel := context.WithCancel(ctx)
	giveUp := e.clock.AfterFunc(e.clock.Now().Add(e.cfg.RetryPeriod), cancel)
	defer giveUp.Stop()
	defer cancel()
	cur, err := e.client.Leases(r.key.Namespace).Get(ctx, r.key.Name, metav1.GetOptions{})
	if err != nil || !e.mine(observe(cur, time.Time{})) || cur.ResourceVersion == resourceVersion(r.lease) {
		return false
	}
	e.log.Info("renewal conflicted with an earlier write of ours that landed late; renewing over it", "lease", r.key.String())
	r.lease = cur
	return true
}

// conflicted handles a 409 on a write over base: someone else wrote first.
// Step down if we held the Lease, and write nothing over that record again;
// the informer will show the winner.
func (e *Elector) conflicted(r *race, base *coordinationv1.Lease) {
	rv := resourceVersion(base)
	e.mu.Lock()
	r.conflict = &rv
	e.mu.Unlock()
	e.lose(r, "conflicting write")
}

// accepted starts or extends r's term after the API server took our write
// sent at sent.
func (e *Elector) accepted(r *race, out *coordinationv1.Lease, sent time.Time) {
	r.lease, r.lastSent, r.foreign, r.freeAt = out, sent, nil, time.Time{}
	e.mu.Lock()
	was, confirmed := r.held, r.confirmed
	r.renewAt = sent.Add(e.cfg.RetryPeriod)
	if !was {
		r.renewAt = e.firstRenewal(r.key, sent)
	}
	keptFor, wasKept := e.endKeepLocked(r)
	e.setLeading(r, true, Term{Deadline: sent.Add(e.cfg.RenewDeadline), Expiry: sent.Add(e.cfg.LeaseDuration)})
	r.confirmed = was && confirmed // a renewal keeps a confirmed term
	r.conflict = nil
	e.stopTellLocked(r)
	e.mu.Unlock()
	if wasKept {
		e.log.Info("lease renewed after being kept without the API server", "lease", r.key.String(), "kept", keptFor)
		if e.cfg.Kept != nil {
			e.cfg.Kept(r.key, keptFor)
		}
	}
	if !was {
		e.log.Info("acquired lease", "lease", r.key.String())
		wakeUp(r) // check the informer for our record right away
	}
}

// release writes holder "" if the Lease is still ours.
func (e *Elector) release(ctx context.Context, key Key, last *coordinationv1.Lease) error {
	leases := e.client.Leases(key.Namespace)
	l := last.DeepCopy()
	for range 2 {
		if !e.mine(observe(l, time.Time{})) {
			return nil // not ours any more
		}
		_, err := leases.Update(ctx, e.released(l), metav1.UpdateOptions{})
		switch {
		case err == nil:
			e.log.Info("released lease", "lease", key.String())
			return nil
		case apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("release %s: %w", key, err)
		}
		if l, err = leases.Get(ctx, key.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("release %s: %w", key, err)
		}
	}
	return fmt.Errorf("release %s: conflicting writers", key)
}

// released returns l with no holder and the shortest duration.
func (e *Elector) released(l *coordinationv1.Lease) *coordinationv1.Lease {
	l = l.DeepCopy()
	empty := ""
	one := int32(1)
	now := metav1.NewMicroTime(e.clock.Now())
	l.Spec.HolderIdentity = &empty
	l.Spec.LeaseDurationSeconds = &one
	l.Spec.RenewTime = &now
	delete(l.Annotations, InstanceAnnotation)
	return l
}

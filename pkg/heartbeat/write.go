package heartbeat

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/election"
)

// write takes key's Lease over base (nil: create it) or, with again,
// re-asserts this node's hold after a lapse; resourceVersion-guarded
// either way.
func (e *Elector) write(ctx context.Context, key election.Key, base *coordinationv1.Lease, again bool) {
	sent := e.clock.Now()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	leases := e.client.Leases(key.Namespace)
	var out *coordinationv1.Lease
	var err error
	if base == nil {
		out, err = leases.Create(ctx, e.svcRecord(key, nil, sent), metav1.CreateOptions{})
	} else {
		out, err = leases.Update(ctx, e.svcRecord(key, base, sent), metav1.UpdateOptions{})
	}
	switch {
	case err == nil:
		e.written(key, out, again)
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
		e.mu.Lock()
		if c := e.cands[key]; c != nil {
			rv := ""
			if base != nil {
				rv = base.ResourceVersion
			}
			c.conflict = &rv
		}
		e.mu.Unlock()
		e.log.Info("lease taken by another first", "lease", key.String())
	default:
		e.log.Warn("lease write failed", "lease", key.String(), "err", err)
		e.retry(key)
	}
}

// written records an accepted write: held, to be confirmed by the informer.
func (e *Elector) written(key election.Key, out *coordinationv1.Lease, again bool) {
	e.mu.Lock()
	c := e.cands[key]
	if c != nil {
		c.held, c.confirmed, c.rv, c.conflict, c.freeAt = true, false, out.ResourceVersion, nil, time.Time{}
		stopTimer(c)
	}
	e.mu.Unlock()
	if c == nil {
		// Resigned while the write was under way: give it back.
		if err := e.release(context.Background(), key); err != nil {
			e.log.Warn("release after resign", "lease", key.String(), "err", err)
		}
		return
	}
	what := "acquired lease"
	if again {
		what = "re-asserted lease after a heartbeat lapse"
	}
	e.log.Info(what, "lease", key.String())
	e.queue.Add(key) // confirm from the informer
}

// svcRecord is key's Lease naming this node as of at, built on base.
func (e *Elector) svcRecord(key election.Key, base *coordinationv1.Lease, at time.Time) *coordinationv1.Lease {
	micro := metav1.NewMicroTime(at)
	var l *coordinationv1.Lease
	if base == nil {
		zero := int32(0)
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace},
			Spec:       coordinationv1.LeaseSpec{AcquireTime: &micro, LeaseTransitions: &zero},
		}
	} else {
		l = base.DeepCopy()
		if h := holderOf(base); h != e.cfg.Identity || base.Annotations[election.InstanceAnnotation] != e.cfg.Instance {
			t := int32(1)
			if base.Spec.LeaseTransitions != nil {
				t = *base.Spec.LeaseTransitions + 1
			}
			l.Spec.LeaseTransitions, l.Spec.AcquireTime = &t, &micro
		}
	}
	stamp(l, e.cfg, at)
	return l
}

// release writes holder "" over key's Lease if it still names this
// instance (resourceVersion-guarded: a newer holder is left alone).
func (e *Elector) release(ctx context.Context, key election.Key) error {
	leases := e.client.Leases(key.Namespace)
	for range 2 {
		l, err := e.lister.Leases(key.Namespace).Get(key.Name)
		if err != nil || holderOf(l) != e.cfg.Identity || l.Annotations[election.InstanceAnnotation] != e.cfg.Instance {
			l, err = leases.Get(ctx, key.Name, metav1.GetOptions{})
		}
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return fmt.Errorf("release %s: %w", key, err)
		case holderOf(l) != e.cfg.Identity || l.Annotations[election.InstanceAnnotation] != e.cfg.Instance:
			return nil // not ours
		}
		l = l.DeepCopy()
		empty, one, now := "", int32(1), metav1.NewMicroTime(e.clock.Now())
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &empty, &one, &now
		delete(l.Annotations, election.InstanceAnnotation)
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		switch {
		case err == nil:
			e.log.Info("released lease", "lease", key.String())
			return nil
		case apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("release %s: %w", key, err)
		}
	}
	return fmt.Errorf("release %s: conflicting writers", key)
}

// rankLocked is this node's rendezvous rank for key among the live nodes
// of this mode (dead excluded): 0 takes a free Service at once. mu held.
func (e *Elector) rankLocked(key election.Key, dead string, now time.Time) int {
	rank := 0
	for name, n := range e.nodes {
		if name != e.cfg.Identity && name != dead && n.alive(now) && election.Outranks(key, name, e.cfg.Identity) {
			rank++
		}
	}
	return rank
}

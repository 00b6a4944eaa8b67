package heartbeat

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/election"
)

// beatState is this node's heartbeat: guarded by Elector.mu.
type beatState struct {
	lastSent time.Time             // send time of the last accepted heartbeat (zero: none yet)
	deadline clock.Timer           // fires at lastSent + RenewDeadline (or the kept term's deadline)
	own      *coordinationv1.Lease // our last accepted write; nil after a failed heartbeat (read it again)
	kept     time.Time             // when the term started being kept without the API (zero: it is not)
	keptTerm election.Term         // the kept term, while kept
}

func (b beatState) term(cfg Config) election.Term {
	return election.Term{Deadline: b.lastSent.Add(cfg.RenewDeadline), Expiry: b.lastSent.Add(cfg.LeaseDuration)}
}

// aliveLocked: this node's last accepted heartbeat was sent less than
// RenewDeadline ago, or its term is kept (keep.go); mu held.
func (e *Elector) aliveLocked(now time.Time) bool {
	_, ok := e.termLocked(now)
	return ok
}

// NodeLeaseName is the name of node's heartbeat Lease.
func NodeLeaseName(node string) string { return NodeLeasePrefix + node }

// next is when to send the heartbeat after the one sent at sent: an
// Interval later, or a RetryPeriod later (if that is sooner) after a
// failed one, so a single failure is tried again before the renew
// deadline.
func (c Config) next(sent time.Time, failed bool) time.Time {
	if failed {
		return sent.Add(min(c.Interval, c.RetryPeriod))
	}
	return sent.Add(c.Interval)
}

// heartbeat renews this node's Lease every Interval until ctx ends.
func (e *Elector) heartbeat(ctx context.Context) {
	timer := e.clock.NewTimer()
	defer timer.Stop()
	timer.Reset(e.clock.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		case <-e.beatNow:
		}
		sent := e.clock.Now()
		err := e.sendBeat(ctx, sent)
		if err != nil {
			e.log.Warn("heartbeat failed", "err", err)
		}
		timer.Reset(e.cfg.next(sent, err != nil))
	}
}

// sendBeat writes this node's Lease as of sent (resourceVersion-guarded
// over our last write; on a conflict it reads the Lease and writes once
// more).
func (e *Elector) sendBeat(ctx context.Context, sent time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	leases := e.client.Leases(e.cfg.NodeNamespace)
	e.mu.Lock()
	base := e.beat.own
	e.mu.Unlock()
	for range 2 {
		var out *coordinationv1.Lease
		var err error
		if base == nil {
			base, err = leases.Get(ctx, NodeLeaseName(e.cfg.Identity), metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				out, err = leases.Create(ctx, e.beatRecord(nil, sent), metav1.CreateOptions{})
			} else if err == nil {
				out, err = leases.Update(ctx, e.beatRecord(base, sent), metav1.UpdateOptions{})
			}
		} else {
			out, err = leases.Update(ctx, e.beatRecord(base, sent), metav1.UpdateOptions{})
		}
		switch {
		case err == nil:
			e.beatAccepted(out, sent)
			return nil
		case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
			base = nil // read it again
			continue
		default:
			e.forgetBeat()
			return fmt.Errorf("node lease: %w", err)
		}
	}
	e.forgetBeat()
	return fmt.Errorf("node lease %s: conflicting writers", NodeLeaseName(e.cfg.Identity))
}

func (e *Elector) forgetBeat() {
	e.mu.Lock()
	e.beat.own = nil
	e.mu.Unlock()
}

// beatRecord is this node's Lease as of sent, built on base (nil: new).
func (e *Elector) beatRecord(base *coordinationv1.Lease, sent time.Time) *coordinationv1.Lease {
	var l *coordinationv1.Lease
	if base == nil {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: NodeLeaseName(e.cfg.Identity), Namespace: e.cfg.NodeNamespace}}
	} else {
		l = base.DeepCopy()
	}
	stamp(l, e.cfg, sent)
	l.Annotations[DurationsAnnotation] = e.cfg.durations()
	return l
}

// stamp makes l name this node (instance, mode) as of at.
func stamp(l *coordinationv1.Lease, cfg Config, at time.Time) {
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Labels[election.ManagedByLabel] = election.ManagedByValue
	l.Annotations[election.InstanceAnnotation] = cfg.Instance
	l.Annotations[ModeAnnotation] = Mode
	id := cfg.Identity
	secs := int32((cfg.LeaseDuration + time.Second - 1) / time.Second) // never shorter than the exact duration
	micro := metav1.NewMicroTime(at)
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &id, &secs, &micro
}

// beatAccepted extends this node's term. A heartbeat answered after the
// previous deadline is a lapse: others may have taken Services over
// meanwhile, so every held Service must be re-asserted before leading
// again.
func (e *Elector) beatAccepted(out *coordinationv1.Lease, sent time.Time) {
	now := e.clock.Now()
	e.mu.Lock()
	lapse := !e.aliveLocked(now) // a kept term is no lapse: nobody could write meanwhile
	kept := e.endKeepLocked(now)
	e.beat.own, e.beat.lastSent = out, sent
	if e.beat.deadline != nil {
		e.beat.deadline.Stop()
	}
	e.beat.deadline = e.clock.AfterFunc(sent.Add(e.cfg.RenewDeadline), e.deadlinePassed)
	var all []election.Key
	if lapse {
		for k, c := range e.cands {
			c.held, c.confirmed = false, false
			all = append(all, k)
			e.queue.Add(k)
		}
	}
	e.mu.Unlock()
	if lapse {
		e.log.Info("heartbeat accepted after a lapse: re-deciding every Service", "services", len(all))
	}
	e.reportKept(kept)
}

// deadlinePassed tells the agent about every Service it led: without a new
// heartbeat it must stop announcing them now.
func (e *Elector) deadlinePassed() {
	e.mu.Lock()
	var led []election.Key
	now := e.clock.Now()
	if !e.aliveLocked(now) && !e.stopped && e.keepLocked(now) {
		e.mu.Unlock()
		return
	}
	e.endKeepLocked(now)
	if !e.aliveLocked(now) && !e.stopped {
		for k, c := range e.cands {
			if c.held && c.confirmed {
				led = append(led, k)
			}
		}
	}
	e.mu.Unlock()
	if len(led) > 0 {
		e.log.Warn("heartbeat not renewed in time: stepping down", "services", len(led))
	}
	for _, k := range led {
		e.notify(k)
	}
}

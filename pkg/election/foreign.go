package election

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A foreign Lease has the name of one of ours but not vigil's label: kube-vip
// wrote it (kubevip-<service>, plndr-svcs-lock), so the label-filtered
// informer never shows it and a Create meets AlreadyExists. The race then
// reads it by GET every RetryPeriod and treats it as any record: its holder
// keeps it while it renews; by this node's own observation it expires
// LeaseDuration after its last change. One rule is stricter: kube-vip
// releases its Lease before it removes the address, so a release by a
// foreign holder is taken only RenewDeadline after it was seen (kube-vip
// removes the address within a fraction of a second; seen at most a
// RetryPeriod late, the address is unanswered for less than a
// LeaseDuration). And with Config.Silent, nothing foreign is taken while
// its addresses still answer on the link (a killed kube-vip leaves its
// address bound: its node answers until vigil starts there and removes it). The takeover is an Update over the
// foreign record (resourceVersion-guarded) that adds vigil's label; from
// then on the informer has it.

// isForeign reports whether l lacks vigil's label.
func isForeign(l *coordinationv1.Lease) bool {
	return l.Labels[ManagedByLabel] != ManagedByValue
}

// readForeign GETs key after a Create met AlreadyExists. A foreign record
// becomes r's and is observed like an informer event; a vigil record
// (the informer is about to show it) leaves r as it was.
func (e *Elector) readForeign(ctx context.Context, r *race) {
	l, err := e.client.Leases(r.key.Namespace).Get(ctx, r.key.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		r.foreign = nil // deleted meanwhile: create again
		return
	case err != nil:
		e.log.Warn("foreign lease read failed", "lease", r.key.String(), "err", err)
		return
	case !isForeign(l):
		r.foreign = nil
		return
	}
	if r.foreign == nil {
		e.log.Info("lease written by another controller (no vigil label): taking it over once it expires",
			"lease", r.key.String(), "holder", holderOf(l))
	}
	r.foreign = l
	o := observe(l, e.clock.Now())
	// Recorded as an informer event would be, but without waking r: r is
	// the caller, and a wake would make it read again at once, in a loop.
	e.record(r.key, &o, l.ResourceVersion)
}

// contendForeign is a step while the Lease is foreign: look again every
// RetryPeriod; take it when expired by our observation, or RenewDeadline
// after its holder released it.
func (e *Elector) contendForeign(ctx context.Context, r *race, v view, now time.Time) time.Time {
	again := now.Add(e.cfg.RetryPeriod)
	switch {
	case v.obs.holder == "" && now.Before(v.obs.at.Add(e.cfg.RenewDeadline)):
		return earliest(again, v.obs.at.Add(e.cfg.RenewDeadline))
	case v.obs.holder != "" && valid(v.obs, now):
		return earliest(again, v.obs.expiry())
	}
	if e.cfg.Silent != nil && !e.cfg.Silent(ctx, r.key) {
		if !r.heard {
			e.log.Info("foreign lease free, but its addresses still answer: waiting", "lease", r.key.String(), "was", v.obs.holder)
			r.heard = true
		}
		return again
	}
	e.log.Info("taking over a foreign lease", "lease", r.key.String(), "from", v.obs.holder)
	return e.write(ctx, r, r.foreign, true)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func holderOf(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

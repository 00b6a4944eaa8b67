package heartbeat

import (
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/election"
)

// nodeRec is the last record of a node Lease and when this node first saw
// it, by its own clock.
type nodeRec struct {
	instance, mode, durations string
	renew                     time.Time
	dur                       time.Duration // the holder's LeaseDuration (exact, from the annotation)
	at                        time.Time
	deadConfirmed             bool      // a fresh GET showed this same record after it expired
	since                     time.Time // since when this instance has been seen alive without a lapse
	timer                     clock.Timer
}

func (n *nodeRec) same(o *nodeRec) bool {
	return n.instance == o.instance && n.renew.Equal(o.renew) && n.mode == o.mode && n.durations == o.durations
}

func (n *nodeRec) expiry() time.Time { return n.at.Add(n.dur) }

// alive: a node of this mode whose Lease has not run out by our observation.
func (n *nodeRec) alive(now time.Time) bool { return n.mode == Mode && now.Before(n.expiry()) }

// svcRec is the last record of a Service Lease.
type svcRec struct {
	holder, instance, mode string
	renew                  time.Time
	dur                    time.Duration
	at                     time.Time
	releasedBy             string // holder "" only: who held it before (it ranks last)
	rv                     string // the resourceVersion it was read at
}

func (r svcRec) same(o svcRec) bool {
	return r.holder == o.holder && r.instance == o.instance && r.mode == o.mode && r.renew.Equal(o.renew)
}

func (e *Elector) mine(r svcRec) bool {
	return r.holder == e.cfg.Identity && r.instance == e.cfg.Instance
}

func toLease(obj any) (*coordinationv1.Lease, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	l, ok := obj.(*coordinationv1.Lease)
	return l, ok
}

// nodeName returns the node whose heartbeat l is, if it is one.
func (e *Elector) nodeName(l *coordinationv1.Lease) (string, bool) {
	if l.Namespace != e.cfg.NodeNamespace {
		return "", false
	}
	return strings.CutPrefix(l.Name, NodeLeasePrefix)
}

func holderOf(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func renewOf(l *coordinationv1.Lease) time.Time {
	if l.Spec.RenewTime == nil {
		return time.Time{}
	}
	return l.Spec.RenewTime.Time
}

func secondsOf(l *coordinationv1.Lease) time.Duration {
	if l.Spec.LeaseDurationSeconds == nil {
		return 0
	}
	return time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
}

// parseNode reads a node Lease as seen at at. The exact LeaseDuration comes
// from the durations annotation; without one, from leaseDurationSeconds.
func parseNode(l *coordinationv1.Lease, at time.Time) *nodeRec {
	n := &nodeRec{
		instance: l.Annotations[election.InstanceAnnotation], mode: l.Annotations[ModeAnnotation],
		durations: l.Annotations[DurationsAnnotation], renew: renewOf(l), dur: secondsOf(l), at: at,
	}
	if first, _, _ := strings.Cut(n.durations, "/"); first != "" {
		if d, err := time.ParseDuration(first); err == nil && d > 0 {
			n.dur = d
		}
	}
	return n
}

func parseSvc(l *coordinationv1.Lease, at time.Time) svcRec {
	return svcRec{
		holder: holderOf(l), instance: l.Annotations[election.InstanceAnnotation],
		mode: l.Annotations[ModeAnnotation], renew: renewOf(l), dur: secondsOf(l), at: at,
	}
}

// observe handles a Lease change seen through the informer.
func (e *Elector) observe(obj any, deleted bool) {
	l, ok := toLease(obj)
	if !ok {
		return
	}
	if name, ok := e.nodeName(l); ok {
		var n *nodeRec
		if !deleted {
			n = parseNode(l, e.clock.Now())
		}
		e.observeNode(name, n)
		return
	}
	key := election.Key{Namespace: l.Namespace, Name: l.Name}
	var r *svcRec
	if !deleted {
		v := parseSvc(l, e.clock.Now())
		r = &v
	}
	if e.recordSvc(key, r, l.ResourceVersion) {
		e.notify(key)
	}
	if r != nil && r.mode != Mode && r.holder != "" && r.holder != e.cfg.Identity && strings.HasPrefix(l.Name, "kubevip-") {
		e.reportMismatch(r.holder, "node "+r.holder+" holds Service Lease "+key.String()+" in per-Service mode, this agent runs node")
	}
}

// recordSvc stores the latest record of a Service Lease (nil: deleted),
// wakes its candidacy and reports whether to notify: its holder changed,
// or the record is the write of ours this node waits to see (rv), which
// confirms the hold here rather than in a step queued behind every
// pending takeover (hundreds when a busy node dies).
func (e *Elector) recordSvc(key election.Key, r *svcRec, rv string) (notify bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	prev, had := e.svcs[key]
	c := e.cands[key]
	if c != nil && e.running {
		e.queue.Add(key)
	}
	if r == nil {
		delete(e.svcs, key)
		return had
	}
	if had && prev.same(*r) {
		r.at, r.releasedBy = prev.at, prev.releasedBy
	} else if had && r.holder == "" {
		r.releasedBy = prev.holder
	}
	r.rv = rv
	e.svcs[key] = *r
	confirm := c != nil && c.held && !c.confirmed && rv == c.rv && e.mine(*r)
	if confirm {
		c.confirmed = true
	}
	return confirm || !had || prev.holder != r.holder || prev.instance != r.instance
}

// observeNode stores the latest record of a node Lease (nil: deleted),
// re-arms its expiry timer, reports a mismatch, and re-decides the Services
// it holds when its instance changed or it is gone.
func (e *Elector) observeNode(name string, n *nodeRec) {
	e.mu.Lock()
	prev := e.nodes[name]
	if n != nil {
		n.since = n.at
	}
	if prev != nil {
		prev.timer.Stop()
		if n != nil && prev.same(n) {
			n.at, n.deadConfirmed = prev.at, prev.deadConfirmed
		}
		if n != nil && prev.instance == n.instance && n.at.Before(prev.expiry()) {
			n.since = prev.since
		}
	}
	if n == nil {
		delete(e.nodes, name)
	} else {
		e.nodes[name] = n
		n.timer = e.clock.AfterFunc(n.expiry(), func() { e.nodeExpired(name, n) })
	}
	mismatch := e.mismatchLocked(name, n)
	var held []election.Key
	if n == nil || prev == nil || prev.instance != n.instance {
		held = e.heldByLocked(name)
	}
	e.mu.Unlock()
	if mismatch != "" {
		e.reportMismatch(name, mismatch)
	}
	for _, k := range held {
		e.notify(k)
	}
}

// nodeExpired re-decides what n's node holds once n, still its latest
// record, has run out by our observation.
func (e *Elector) nodeExpired(name string, n *nodeRec) {
	e.mu.Lock()
	var held []election.Key
	if e.nodes[name] == n && !e.stopped {
		held = e.heldByLocked(name)
	}
	e.mu.Unlock()
	for _, k := range held {
		e.notify(k)
	}
}

// heldByLocked lists the Services whose Lease names node, and queues the
// ones this node is a candidate for; mu held.
func (e *Elector) heldByLocked(node string) []election.Key {
	var out []election.Key
	for k, r := range e.svcs {
		if r.holder != node {
			continue
		}
		out = append(out, k)
		if e.cands[k] != nil && e.running {
			e.queue.Add(k)
		}
	}
	return out
}

// mismatchLocked says how node's record differs from this agent's mode and
// durations ("" if it does not, or if it is this node).
func (e *Elector) mismatchLocked(node string, n *nodeRec) string {
	if n == nil || node == e.cfg.Identity {
		return ""
	}
	switch {
	case n.mode != Mode:
		return "node " + node + " runs election mode " + quoted(n.mode) + ", this agent runs node"
	case n.durations != e.cfg.durations():
		return "node " + node + " runs lease durations " + quoted(n.durations) + ", this agent " + e.cfg.durations()
	}
	return ""
}

func quoted(s string) string { return "\"" + s + "\"" }

// reportMismatch logs a mismatch once per node and change, and calls
// OnMismatch.
func (e *Elector) reportMismatch(node, detail string) {
	e.mu.Lock()
	seen := e.reported[node] == detail
	e.reported[node] = detail
	e.mu.Unlock()
	if seen {
		return
	}
	e.log.Error("election mismatch: every agent must run the same election mode and lease durations", "node", node, "detail", detail)
	if e.cfg.OnMismatch != nil {
		e.cfg.OnMismatch(node, detail)
	}
}

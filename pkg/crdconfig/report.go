package crdconfig

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ConditionValid is the BGPPeer condition the source sets: True when the
// agents use the peer, False with a reason naming the bad field
// (InvalidPasswordSecret, InvalidBfdProfile...).
const ConditionValid = "Valid"

// report tells each object's problem once: a Warning Event when it
// appears or changes, and the Valid condition on BGPPeers. Only the writer
// writes; transient problems are logged, not reported.
func (s *Source) report(ctx context.Context, lists map[schema.GroupVersionResource][]*unstructured.Unstructured, problems map[string]error) {
	writes := s.o.Writes == nil || s.o.Writes()
	seen := map[string]bool{}
	for gvr, objs := range lists {
		for _, obj := range objs {
			key := objectKey(obj)
			seen[key] = true
			err := problems[key]
			if errors.Is(err, errTransient) {
				s.logOnce("object "+key, "cannot check object; it is left out until the API server answers", "object", key, "err", err)
				continue
			}
			s.clearLog("object " + key)
			if !writes {
				continue
			}
			s.event(obj, err)
			if gvr == BGPPeers {
				s.setStatus(ctx, obj, err)
			}
		}
	}
	for key := range s.reported {
		if !seen[key] {
			delete(s.reported, key)
			s.clearLog("object " + key)
		}
	}
	for key := range s.wrote {
		if !seen[key] {
			delete(s.wrote, key)
		}
	}
}

// event records a Warning for a new or changed problem.
func (s *Source) event(obj *unstructured.Unstructured, err error) {
	key, problem := objectKey(obj), ""
	if err != nil {
		problem = string(obj.GetUID()) + " " + err.Error() // a new object with the same problem is told again
	}
	if last, ok := s.reported[key]; ok && last == problem || !ok && problem == "" {
		return
	}
	s.reported[key] = problem
	if err == nil {
		return
	}
	s.o.Log.Warn("object left out of the BGP configuration", "object", key, "err", err)
	if s.o.Recorder != nil {
		s.o.Recorder.Eventf(obj, corev1.EventTypeWarning, reason(err), "%s %s left out: %v", obj.GetKind(), obj.GetName(), err)
	}
}

// setStatus writes a BGPPeer's status when it differs: the Valid condition,
// the Established condition and the per-node sessions.
func (s *Source) setStatus(ctx context.Context, obj *unstructured.Unstructured, err error) {
	old, cerr := readStatus(obj)
	if cerr != nil {
		s.logOnce("status "+obj.GetName(), "cannot read BGPPeer status", "peer", obj.GetName(), "err", cerr)
	}
	want := peerStatus{Conditions: slices.Clone(old.Conditions), Sessions: s.sessionsOf(obj)}
	now := metav1.NewTime(s.o.Clock.Now())
	meta.SetStatusCondition(&want.Conditions, validCondition(obj.GetGeneration(), err, now))
	meta.SetStatusCondition(&want.Conditions, establishedCondition(obj.GetGeneration(), want.Sessions, now))
	last, ok := s.wrote[objectKey(obj)]
	if sameStatus(old, want) || (ok && last.over == obj.GetResourceVersion() && sameStatus(last.status, want)) {
		return
	}
	delete(s.wrote, objectKey(obj))
	if err := s.writeStatus(ctx, obj, want); err != nil {
		// The informer brings the newer object (a conflict: the cache was
		// behind) and the next rebuild tries again.
		if apierrors.IsConflict(err) || ctx.Err() != nil {
			s.o.Log.Debug("BGPPeer status not written; will try again", "peer", obj.GetName(), "err", err)
			return
		}
		s.logOnce("status "+obj.GetName(), "cannot write BGPPeer status", "peer", obj.GetName(), "err", err)
		return
	}
	s.wrote[objectKey(obj)] = statusWrite{over: obj.GetResourceVersion(), status: want}
	s.clearLog("status " + obj.GetName())
}

// statusWrite is a status written over one cached version of an object.
type statusWrite struct {
	over   string // the resourceVersion of the object it was written over
	status peerStatus
}

// validCondition says whether the agents use the peer.
func validCondition(gen int64, err error, now metav1.Time) metav1.Condition {
	c := metav1.Condition{Type: ConditionValid, Status: metav1.ConditionTrue, Reason: "Valid",
		Message: "the agents use this peer", ObservedGeneration: gen, LastTransitionTime: now}
	if err != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, reason(err), err.Error()
	}
	return c
}

// sameStatus compares what setStatus writes, ignoring transition times
// (SetStatusCondition keeps the old one when the status is unchanged).
func sameStatus(a, b peerStatus) bool {
	if !slices.Equal(a.Sessions, b.Sessions) || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for _, c := range b.Conditions {
		o := meta.FindStatusCondition(a.Conditions, c.Type)
		if o == nil || o.Status != c.Status || o.Reason != c.Reason || o.Message != c.Message || o.ObservedGeneration != c.ObservedGeneration {
			return false
		}
	}
	return true
}

// peerStatus is a BGPPeer's status subresource.
type peerStatus struct {
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	Sessions   []Session          `json:"sessions,omitempty"`
}

// readStatus reads status.conditions and status.sessions.
func readStatus(obj *unstructured.Unstructured) (peerStatus, error) {
	var out peerStatus
	raw, found, err := unstructured.NestedMap(obj.Object, "status")
	if err != nil || !found {
		return out, err
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &out); err != nil {
		return peerStatus{}, fmt.Errorf("status: %w", err)
	}
	return out, nil
}

// writeStatus updates the status subresource of a copy of obj.
func (s *Source) writeStatus(ctx context.Context, obj *unstructured.Unstructured, st peerStatus) error {
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	cp := obj.DeepCopy()
	cp.Object["status"] = raw
	if _, err := s.dyn.Resource(BGPPeers).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status of BGPPeer %s: %w", obj.GetName(), err)
	}
	return nil
}

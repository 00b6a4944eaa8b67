package crdconfig

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ConditionEstablished is the BGPPeer condition that says whether every
// node peering with it has its session up: True when all are, False naming
// those that are not (with their last error), Unknown when no node peers.
const ConditionEstablished = "Established"

// SessionEstablished is the State of a session that is up.
const SessionEstablished = "established"

// Session is one node's BGP session with a peer, as the node published it.
type Session struct {
	Node      string `json:"node"`
	State     string `json:"state"`
	LastError string `json:"lastError,omitempty"`
}

// Sessions lists every node's session with the peer at address (and AS),
// sorted by node. Options.Sessions supplies it.
type Sessions func(peer netip.Addr, asn uint32) []Session

// Resync asks Run to report again (for example after a node published
// new sessions); it only enqueues.
func (s *Source) Resync() { s.enqueue() }

// sessionsOf is the sessions with the BGPPeer obj, none when it cannot be
// read or Options.Sessions is unset.
func (s *Source) sessionsOf(obj *unstructured.Unstructured) []Session {
	if s.o.Sessions == nil {
		return nil
	}
	var spec peerSpec
	if err := specOf(obj, &spec); err != nil {
		return nil // Valid says what is wrong
	}
	ip, err := netip.ParseAddr(spec.PeerAddress)
	if err != nil {
		return nil
	}
	out := slices.Clone(s.o.Sessions(ip, spec.PeerASN))
	slices.SortFunc(out, func(a, b Session) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// establishedCondition summarizes sessions.
func establishedCondition(gen int64, sessions []Session, now metav1.Time) metav1.Condition {
	c := metav1.Condition{Type: ConditionEstablished, ObservedGeneration: gen, LastTransitionTime: now}
	var down []string
	for _, ss := range sessions {
		if ss.State == SessionEstablished {
			continue
		}
		d := ss.Node + ": " + ss.State
		if ss.LastError != "" {
			d += " (" + ss.LastError + ")"
		}
		down = append(down, d)
	}
	switch {
	case len(sessions) == 0:
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, "NoSessions", "no node peers with it"
	case len(down) == 0:
		c.Status, c.Reason = metav1.ConditionTrue, "Established"
		c.Message = fmt.Sprintf("established from %d node(s)", len(sessions))
	default:
		c.Status, c.Reason = metav1.ConditionFalse, "NotEstablished"
		c.Message = fmt.Sprintf("%d of %d node(s) not established: %s", len(down), len(sessions), strings.Join(down, "; "))
	}
	return c
}

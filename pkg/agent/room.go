package agent

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// waitingForRoom is the said key of the ElectionFull Event.
const waitingForRoom = "election full"

// sayWaiting tells a Service, once while it waits, why it is not announced
// when its Lease is free but this node (per-Service mode) holds as many as
// its write budget renews. Only the node the election ranks first among
// the Service's candidates says it; every other full node would say the
// same. a.mu must be held.
func (a *Agent) sayWaiting(svc *kube.Service, st *serviceState, leading bool) {
	if leading || !st.candidate {
		delete(st.said, waitingForRoom) // a later wait is news again
		return
	}
	if !a.elector.Waiting(st.lease) || !a.rankedFirst(svc, st.lease) || !st.once(waitingForRoom) {
		return
	}
	a.event(svc, corev1.EventTypeWarning, "ElectionFull",
		"node %s holds as many Service Leases as its write budget renews every retry period, and so does every other candidate; the Service waits until one is freed (vigil_election_mode=node has no such limit)",
		a.cfg.NodeName)
}

// rankedFirst reports whether no other candidate node of svc outranks this
// one for its Lease: the eligible Nodes, with Local policy only those with
// a ready endpoint.
func (a *Agent) rankedFirst(svc *kube.Service, lease election.Key) bool {
	others := a.EligibleNodes()
	if svc != nil && svc.Local {
		others = nil
		for name := range a.readyOf(svc.Key).Nodes {
			if a.nodeEligible(name) {
				others = append(others, name)
			}
		}
	}
	for _, n := range others {
		if n != a.cfg.NodeName && election.Outranks(lease, n, a.cfg.NodeName) {
			return false
		}
	}
	return true
}

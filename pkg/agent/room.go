package agent

import (
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// waitsForRoom reports whether the Service waits for room, as this node
// tells it: its Lease is free for this node, which holds as many as its
// write budget renews (per-Service mode), no one else holds it, and no
// other candidate node outranks this one for it (so one node tells it;
// the others, full too, would say the same). a.mu must be held.
func (a *Agent) waitsForRoom(svc *kube.Service, st *serviceState, leading bool) bool {
	return !leading && st.candidate && a.elector.Waiting(st.lease) && !a.elector.HeldByOther(st.lease) && a.rankedFirst(svc, st.lease)
}

// rankedFirst reports whether no other candidate node of svc outranks this
// one for its Lease: the eligible Nodes, with Local policy only those with
// a ready endpoint.
func (a *Agent) rankedFirst(svc *kube.Service, lease election.Key) bool {
	others := a.EligibleNodes()
	if svc != nil && svc.Local {
		others = a.readyEligibleNodes(a.readyOf(svc.Key))
	}
	for _, n := range others {
		if n != a.cfg.NodeName && election.Outranks(lease, n, a.cfg.NodeName) {
			return false
		}
	}
	return true
}

package agent

import (
	"maps"
	"slices"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// Opt-in rebalancing (Config.Rebalance, vigil_rebalance): a Service stays
// with a live holder — there is no failback — so after a rolling restart
// the last node restarted holds nothing. With rebalancing on, every
// Config.Rebalance this node hands at most one Service over, gracefully
// (withdrawn here, then its Lease released), to the node the election
// ranks first for it, which takes it at once. Only what can move without
// a gap is moved:
//
//   - a Service announced by L2 from here on its own per-Service Lease,
//     alone on its addresses (a shared address moves with all its
//     Services, or not at all), with no DHCP lease and no UPnP forwards
//     (both tied to this node);
//   - to a node the elector knows to be alive and ranks first for it
//     (Successors), that may announce it: not excluded from load
//     balancing, and with Local policy holding a ready endpoint.
//
// Each node moves only what it holds, towards the ranking every node
// computes alike, so the moves converge to the rendezvous spread and never
// chase each other.

// Successors is what rebalancing needs of the election: the node that
// would take key at once were this node to release it, if that node is
// alive and outranks this one (pkg/election and pkg/heartbeat).
type Successors interface {
	Successor(key election.Key) (node string, ok bool)
}

// rebalanceOne marks the first Service (by key) this node may hand over for
// the next sync to withdraw and resign.
func (a *Agent) rebalanceOne() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, key := range slices.Sorted(maps.Keys(a.states)) {
		st := a.states[key]
		to, ok := a.handoverTarget(st)
		if !ok {
			continue
		}
		a.log.Info("handing service over to rebalance", "service", key, "node", a.cfg.NodeName, "to", to)
		st.yield = true
		a.queue.Add(key)
		return
	}
}

// handoverTarget names the node st's Service may be handed over to.
func (a *Agent) handoverTarget(st *serviceState) (string, bool) {
	if !st.announcing || !st.candidate || !st.l2 || st.routed || st.yield || len(st.addrs) == 0 ||
		len(st.dhcpAddrs) > 0 || st.upnp.local.IsValid() || st.lease != perServiceLease(st.key) {
		return "", false
	}
	for _, ip := range st.addrs {
		if len(a.users(ip)) != 1 {
			return "", false
		}
	}
	to, ok := a.succ.Successor(st.lease)
	if !ok {
		return "", false
	}
	svc, err := a.model(st.key)
	if err != nil || svc == nil || !a.eligibleOn(svc, a.readyOf(svc.Key), to) {
		return "", false
	}
	return to, true
}

// eligibleOn reports whether node may announce svc, given its ready
// endpoints: an eligible node, with (Local policy) a ready endpoint of its
// own or (Cluster) a ready endpoint anywhere.
func (a *Agent) eligibleOn(svc *kube.Service, ready kube.Ready, node string) bool {
	if !a.nodeEligible(node) {
		return false
	}
	if svc.Local {
		return ready.Nodes[node]
	}
	return ready.Any || svc.WithoutEndpoints
}

package agent

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// Foreign deals with VIPs another load balancer holds or left (pkg/vip):
// it removes those bound on this node, and probes the link for them.
type Foreign interface {
	RemoveForeign(addrs []netip.Addr) ([]netip.Addr, error)
	Answered(addr netip.Addr, deadline time.Time) (bool, error)
}

// probeWait bounds one probe for an address (ARP / NDP round trip on a LAN).
const probeWait = 300 * time.Millisecond

// removeForeign runs once, after the caches synced and before the first
// sync: an address of a Service vigil handles that is bound on the node but
// not by vigil was left by the load balancer vigil replaces (kube-vip
// killed during a migration). Left there, this node would answer ARP for
// it beside the Service's holder; vigil binds it again if it wins the
// Service's election.
func (a *Agent) removeForeign() {
	if a.cfg.L2Off {
		return
	}
	var addrs []netip.Addr
	for _, m := range a.handledModels() {
		addrs = append(addrs, m.Addrs...)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	removed, err := a.dp.RemoveForeign(slices.Compact(addrs))
	if err != nil {
		a.log.Warn("removing VIPs left by another load balancer", "err", err)
	}
	if len(removed) > 0 {
		a.log.Info("removed VIPs left bound by another load balancer", "vips", removed)
	}
}

// Silent is the elector's question before it takes a Lease another
// controller held: are the addresses of the Services that Lease decides
// silent on the link? A node still answering for one (a killed kube-vip's
// leftover) makes it wait. A failed probe counts as an answer.
func (a *Agent) Silent(ctx context.Context, key election.Key) bool {
	for _, m := range a.handledModels() {
		if a.leaseKey(m.Key, m) != key {
			continue
		}
		for _, ip := range m.Addrs {
			if ctx.Err() != nil {
				return false
			}
			answered, err := a.dp.Answered(ip, a.clock.Now().Add(probeWait))
			if err != nil || answered {
				a.log.Debug("address of a foreign lease still answers", "lease", key.String(), "vip", ip, "err", err)
				return false
			}
		}
	}
	return true
}

// handledModels is the model of every listed Service vigil handles.
func (a *Agent) handledModels() []*kube.Service {
	svcs, _ := a.services.List(labels.Everything()) // a lister does not fail
	var out []*kube.Service
	for _, svc := range svcs {
		if m := a.models.Get(svc); m.Handled {
			out = append(out, m)
		}
	}
	return out
}

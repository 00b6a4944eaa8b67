package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/plan"
	"github.com/vigil-lb/vigil/pkg/upnp"
)

// maxUPnPDrain bounds how long a VIP is kept up for its forwards to be
// deleted when its Service goes away (or on shutdown).
const maxUPnPDrain = 3 * time.Second

// wantsForwards reports whether this node should keep UPnP forwards for the
// Service: UPnP on, annotated kube-vip.io/forwardUPNP: "true", led here.
func (a *Agent) wantsForwards(svc *kube.Service, v plan.Verdict, leading bool) bool {
	return a.pm != nil && v.Active && leading && svc.UPnP.Forward
}

// stopForwards withdraws forwards the Service no longer wants. When the
// Service has gone elsewhere (another node holds it) they are handed over:
// they point at the VIP, which the new holder maps again. Otherwise they are
// deleted, and the VIP stays up here until that is done (at most
// maxUPnPDrain).
func (a *Agent) stopForwards(st *serviceState, key string, forward bool) {
	if !st.upnp.local.IsValid() || forward {
		return
	}
	if st.upnp.drainSince.IsZero() {
		a.pm.Set(key, st.upnp.local, nil)
		if a.elector.HeldByOther(st.lease) {
			a.byForward.update(st, func() { st.upnp = upnpState{} })
			return
		}
		st.upnp.drainSince = a.clock.Now()
		a.queue.AddAfter(key, maxUPnPDrain)
		return
	}
	if !a.isDraining(st, key) {
		a.byForward.update(st, func() { st.upnp = upnpState{} })
	}
}

// isDraining reports whether key's forwards are still being deleted (and
// the bound on that has not passed).
func (a *Agent) isDraining(st *serviceState, key string) bool {
	if st.upnp.drainSince.IsZero() || a.clock.Now().Sub(st.upnp.drainSince) >= maxUPnPDrain {
		return false
	}
	// Until the manager has taken the request in, its forwards still show
	// as mapped; then as draining until they are deleted.
	return a.pm.Draining(key) || len(a.pm.State(key).Mapped) > 0
}

// drainingOn reports whether ip must stay up for forwards being deleted.
func (a *Agent) drainingOn(ip netip.Addr) bool {
	for st := range a.byForward.on(ip) {
		if a.isDraining(st, st.key) {
			return true
		}
	}
	return false
}

// syncForwards asks for the Service's forwards (every TCP and UDP port,
// from the gateway's external side to VIP:port) while it is announced
// here, and reports the gateway's external address and the outcome.
func (a *Agent) syncForwards(svc *kube.Service, st *serviceState, forward bool, in *statusIntent) {
	if !forward || !in.up {
		return
	}
	local, ok := firstIPv4(in.addrs)
	if !ok {
		a.upnpEvent(svc, st, corev1.EventTypeWarning, "UPnPFailed", "UPnP forwards need an IPv4 VIP")
		return
	}
	a.pm.Set(st.key, local, mappings(svc, local))
	a.byForward.update(st, func() { st.upnp = upnpState{local: local} })
	s := a.pm.State(st.key)
	in.external = s.External
	switch {
	case s.Err != nil:
		a.upnpEvent(svc, st, corev1.EventTypeWarning, "UPnPFailed", s.Err.Error())
	case len(s.Mapped) > 0:
		var ports []string
		for _, m := range s.Mapped {
			ports = append(ports, fmt.Sprintf("%d/%s", m.ExternalPort, m.Protocol))
		}
		a.upnpEvent(svc, st, corev1.EventTypeNormal, "UPnPMapped",
			fmt.Sprintf("gateway %s forwards %s to %s", s.External, strings.Join(ports, ","), local))
	}
}

func firstIPv4(addrs []netip.Addr) (netip.Addr, bool) {
	for _, ip := range addrs {
		if ip.Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// mappings are the forwards a Service wants to local.
func mappings(svc *kube.Service, local netip.Addr) []upnp.Mapping {
	var want []upnp.Mapping
	for _, p := range svc.Ports {
		if p.Protocol != corev1.ProtocolTCP && p.Protocol != corev1.ProtocolUDP {
			continue
		}
		want = append(want, upnp.Mapping{
			Protocol: string(p.Protocol), ExternalPort: uint16(p.Port),
			Internal:    netip.AddrPortFrom(local, uint16(p.Port)),
			Description: "vigil " + svc.Key, Lease: svc.UPnP.Lease,
		})
	}
	return want
}

// upnpEvent records an Event once per distinct message.
func (a *Agent) upnpEvent(svc *kube.Service, st *serviceState, typ, reason, msg string) {
	if st.once("upnp " + reason + msg) {
		a.event(svc, typ, reason, "%s", msg)
	}
}

// drainLastForwards deletes, while their VIPs are still up, the forwards of
// Services no other node can take over (this node is the last eligible
// one); the others are handed over to the next holder. Used on shutdown.
func (a *Agent) drainLastForwards(ctx context.Context) error {
	if a.pm == nil {
		return nil
	}
	a.mu.Lock()
	var last []string
	for key, st := range a.states {
		if st.upnp.local.IsValid() && st.upnp.drainSince.IsZero() && a.lastEligible(key) {
			last = append(last, key)
		}
	}
	a.mu.Unlock()
	if len(last) == 0 {
		return nil
	}
	a.log.Info("deleting UPnP forwards no other node can take over", "services", last)
	if err := a.pm.Drain(ctx, last...); err != nil {
		return fmt.Errorf("delete UPnP forwards on shutdown: %w", err)
	}
	return nil
}

// lastEligible reports whether no node but this one may announce the
// Service: with Local policy, no other eligible node has a ready local
// endpoint; otherwise no other Node is eligible and Ready.
func (a *Agent) lastEligible(key string) bool {
	svc, err := a.model(key)
	if err != nil || svc == nil {
		return true
	}
	if svc.Local {
		for n := range a.readyOf(key).Nodes {
			if n != a.cfg.NodeName && a.nodeEligible(n) {
				return false
			}
		}
		return true
	}
	nodes, err := a.nodes.List(labels.Everything())
	if err != nil {
		return true
	}
	for _, n := range nodes {
		if n.Name != a.cfg.NodeName && kube.NodeReady(n) && a.nodeEligible(n.Name) {
			return false
		}
	}
	return true
}

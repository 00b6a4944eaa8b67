package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/plan"
	"github.com/vigil-lb/vigil/pkg/vip"
)

// syncDHCP runs the DHCP side of a Service asking for 0.0.0.0 or ::: the
// leading node keeps a lease per family (Config.DHCPMode) on a macvlan and
// its addresses up; every other node (and a Service that stopped asking,
// or is gone) has no macvlan and no client.
func (a *Agent) syncDHCP(log *slog.Logger, svc *kube.Service, st *serviceState, v plan.Verdict, leading bool, in *statusIntent) error {
	if !v.Active || !svc.DHCP.Asked() || !leading {
		a.byAddr.update(st, func() { st.dhcpAddrs = nil })
		if !slices.Contains(a.dp.DHCPKeys(), st.key) {
			return nil
		}
		log.Info("stopping DHCP for the service")
		if err := a.dp.StopDHCP(st.key); err != nil {
			return fmt.Errorf("stop DHCP: %w", err)
		}
		return nil
	}
	// The leased address gets the kernel lifetime of a static VIP: it
	// lapses by itself when this node may no longer hold the Service, even
	// if this process is stopped or killed (refreshAddrs extends it).
	t, ok := a.elector.Term(st.lease)
	if !ok {
		return nil // leadership ended meanwhile: the next sync stops DHCP
	}
	p := vip.DHCPParams{
		MAC: svc.DHCP.MAC, Hostname: svc.DHCP.Hostname, Requested: svc.DHCP.Requested,
		Broadcast: svc.DHCP.Broadcast, RPFilter: svc.DHCP.RPFilter, Macvlan: svc.DHCP.Macvlan,
		Until: t.Expiry.Add(-a.cfg.AddrMargin),
	}
	p.IPv4, p.IPv6 = svc.DHCP.Families(a.cfg.DHCPMode)
	if len(st.dhcpAddrs) > 0 {
		p.Requested = st.dhcpAddrs
	}
	addrs, err := a.dp.EnsureDHCP(st.key, p)
	in.mac = p.MAC.String()
	if errors.Is(err, vip.ErrTooLate) && len(st.dhcpAddrs) > 0 {
		// As up: addresses already up whose term is too short to extend
		// keep their earlier lifetime; that is no lost lease.
		in.addrs, in.up = st.dhcpAddrs, true
		return nil
	}
	a.dhcpOutcome(svc, st, p, addrs, in)
	if err != nil {
		return fmt.Errorf("DHCP: %w", err)
	}
	return nil
}

// dhcpOutcome records what EnsureDHCP gave and reports changes. The
// Service is up when every family it asks for has its address.
func (a *Agent) dhcpOutcome(svc *kube.Service, st *serviceState, p vip.DHCPParams, addrs []netip.Addr, in *statusIntent) {
	for _, lost := range st.dhcpAddrs {
		if !slices.Contains(addrs, lost) {
			a.event(svc, corev1.EventTypeWarning, "DHCPLeaseLost", "the DHCP lease of %s for %s ended; %s withdrawn, still asking", lost, p.MAC, lost)
		}
	}
	for _, got := range addrs {
		if !slices.Contains(st.dhcpAddrs, got) {
			a.event(svc, corev1.EventTypeNormal, "DHCPAcquired", "node %s leased %s for MAC %s", a.cfg.NodeName, got, p.MAC)
		}
	}
	a.byAddr.update(st, func() { st.dhcpAddrs = addrs })
	if len(addrs) == btoi(p.IPv4)+btoi(p.IPv6) {
		in.addrs, in.up = addrs, true
		return
	}
	in.up, in.addrs, in.pending = false, nil, true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

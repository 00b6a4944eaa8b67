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

// syncDHCP runs the DHCP side of a Service asking for 0.0.0.0: the leading
// node keeps a lease on a macvlan and its address up; every other node (and
// a Service that stopped asking, or is gone) has no macvlan and no client.
func (a *Agent) syncDHCP(log *slog.Logger, svc *kube.Service, st *serviceState, v plan.Verdict, leading bool, in *statusIntent) error {
	if !v.Active || !svc.DHCP.V4 || !leading {
		st.dhcpAddr = netip.Addr{}
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
		MAC: svc.DHCP.MAC, Hostname: svc.DHCP.Hostname, RequestedIP: svc.DHCP.RequestedIP,
		Broadcast: svc.DHCP.Broadcast, RPFilter: svc.DHCP.RPFilter, Macvlan: svc.DHCP.Macvlan,
		Until: t.Expiry.Add(-a.cfg.AddrMargin),
	}
	if st.dhcpAddr.IsValid() {
		p.RequestedIP = st.dhcpAddr
	}
	addr, ok, err := a.dp.EnsureDHCP(st.key, p)
	in.mac = p.MAC.String()
	if errors.Is(err, vip.ErrTooLate) && st.dhcpAddr.IsValid() {
		// As up: an address already up whose term is too short to extend
		// keeps its earlier lifetime; that is no lost lease.
		in.addrs, in.up = []netip.Addr{st.dhcpAddr}, true
		return nil
	}
	a.dhcpOutcome(svc, st, p, addr, ok, in)
	if err != nil {
		return fmt.Errorf("DHCP: %w", err)
	}
	return nil
}

// dhcpOutcome records what EnsureDHCP gave and reports changes.
func (a *Agent) dhcpOutcome(svc *kube.Service, st *serviceState, p vip.DHCPParams, addr netip.Addr, ok bool, in *statusIntent) {
	prev := st.dhcpAddr
	switch {
	case ok:
		in.addrs, in.up = []netip.Addr{addr}, true
		if prev != addr {
			a.event(svc, corev1.EventTypeNormal, "DHCPAcquired", "node %s leased %s for MAC %s", a.cfg.NodeName, addr, p.MAC)
		}
		st.dhcpAddr = addr
		return
	case prev.IsValid():
		a.event(svc, corev1.EventTypeWarning, "DHCPLeaseLost", "the DHCP lease for %s expired; %s withdrawn, still asking", p.MAC, prev)
		st.dhcpAddr = netip.Addr{}
	}
	in.up, in.addrs, in.pending = false, nil, true
}

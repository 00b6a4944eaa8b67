package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vigil-lb/vigil/pkg/netif"
	"github.com/vigil-lb/vigil/pkg/probe"
)

// RemoveForeign removes, from the interface each would be bound on, the
// host-prefix (/32, /128) addresses among addrs that this manager has not
// bound: VIPs another load balancer left on the node (kube-vip killed
// during a migration). It returns those it removed. An address with
// another prefix length (the node's own address) is never touched.
func (m *Manager) RemoveForeign(addrs []netip.Addr) ([]netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var removed []netip.Addr
	var errs []error
	for _, a := range addrs {
		if _, ours := m.bound[a]; ours {
			continue
		}
		name, err := m.interfaceFor(a)
		if err != nil {
			continue // no interface would hold it: nothing there
		}
		l, err := netif.Open(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ok, err := l.Unbind(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("remove foreign %s from %s: %w", a, name, err))
			continue
		}
		if ok {
			removed = append(removed, a)
			m.log.Info("removed a VIP bound by something else (another load balancer?)", "vip", a, "interface", name)
		}
	}
	return removed, errors.Join(errs...)
}

// Answered probes the link addr would be bound on (ARP or NDP) until
// deadline, and reports whether some host answers for it. An address this
// manager has bound is answered by this node: true.
func (m *Manager) Answered(addr netip.Addr, deadline time.Time) (bool, error) {
	m.mu.Lock()
	_, ours := m.bound[addr]
	name, err := m.interfaceFor(addr)
	m.mu.Unlock()
	if ours {
		return true, nil
	}
	if err != nil {
		return false, nil // no link would hold it: nobody answers us there
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return false, fmt.Errorf("probe %s: %w", addr, err)
	}
	_, ok, err := probe.Answered(ifi, addr, deadline)
	return ok, err
}

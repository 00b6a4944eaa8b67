package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Preserve stops announcing addr but keeps it bound, permanently, with the
// node silenced for it (Config.Silencer: no ARP answer, ARP requests from
// it sent as probes), so connections to it that still reach this node are
// not cut while only the new holder answers for it (kube-vip's
// vip_preserve_on_leadership_loss, made safe). Without a Silencer, and for
// IPv6 (the kernel would answer neighbour solicitations on the interface),
// Preserve is Down. A preserved address is not Bound; Up takes it back
// (silence lifted first), Down removes it.
func (m *Manager) Preserve(addr netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bound[addr]
	switch {
	case !ok || b.preserved:
		return nil
	case m.cfg.Silencer == nil || !addr.Is4():
		return m.downLocked(addr)
	}
	b.preserved = true
	m.bound[addr] = b
	if err := m.silenceLocked(); err != nil {
		b.preserved = false
		m.bound[addr] = b
		return fmt.Errorf("preserve %s: %w; withdrawing it", addr, errors.Join(err, m.downLocked(addr)))
	}
	ifc := m.ifaces[b.iface]
	ifc.ann.Remove(addr)
	if _, err := ifc.link.BindFor(addr, 0); err != nil {
		return fmt.Errorf("preserve %s: keep it bound: %w", addr, err)
	}
	b.end = time.Time{}
	m.bound[addr] = b
	m.log.Info("VIP preserved: no longer announced nor answered by ARP", "vip", addr, "interface", b.iface)
	return nil
}

// Preserved lists the preserved addresses, sorted.
func (m *Manager) Preserved() []netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []netip.Addr
	for a, b := range m.bound {
		if b.preserved {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// unpreserveLocked lifts addr's silence before it is announced again or
// removed; mu must be held.
func (m *Manager) unpreserveLocked(addr netip.Addr) error {
	b, ok := m.bound[addr]
	if !ok || !b.preserved {
		return nil
	}
	b.preserved = false
	m.bound[addr] = b
	return m.silenceLocked()
}

// silenceLocked hands the Silencer every preserved address; mu must be
// held.
func (m *Manager) silenceLocked() error {
	if m.cfg.Silencer == nil {
		return nil
	}
	var addrs []netip.Addr
	for a, b := range m.bound {
		if b.preserved {
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	return m.cfg.Silencer.Set(addrs)
}

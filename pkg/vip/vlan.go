package vip

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vigil-lb/vigil/pkg/netif"
)

// vlan is an 802.1Q link a VIP is to be bound on.
type vlan struct {
	parent string // "": Config.Interface, else the default-route interface
	id     int
}

// UseVLAN makes Up bind addr on VLAN id of parent (kube-vip.io/serviceVLAN),
// creating the link parent.id if it is missing. A link this manager made
// is deleted when its last address goes (Down), and after a crash by
// Recover (it is journaled).
func (m *Manager) UseVLAN(addr netip.Addr, parent string, id int) error {
	if parent == "" {
		parent = m.cfg.Interface
	}
	if parent == "" {
		p, err := netif.DefaultRouteInterface(nil)
		if err != nil {
			return fmt.Errorf("vip: VLAN %d parent: %w", id, err)
		}
		parent = p
	}
	name, err := netif.VLANName(parent, id)
	if err != nil {
		return err
	}
	m.UseInterface(addr, name)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vlans[name] = vlan{parent: parent, id: id}
	return nil
}

// ensureVLANLocked creates name if it is a VLAN asked for and missing;
// mu must be held.
func (m *Manager) ensureVLANLocked(name string) error {
	v, ok := m.vlans[name]
	if !ok || m.madeVLANs[name] {
		return nil
	}
	created, err := netif.AddVLAN(netif.Handle(), v.parent, name, v.id)
	if err != nil {
		return err
	}
	if created {
		m.madeVLANs[name] = true
		m.log.Info("VLAN link created", "interface", name, "vlan", v.id, "parent", v.parent)
		if err := m.writeJournalLocked(); err != nil {
			m.log.Warn("cannot write VIP journal", "err", err)
		}
	}
	return nil
}

// dropVLANLocked deletes name when this manager made it and no address is
// bound on it any more; mu must be held.
func (m *Manager) dropVLANLocked(name string) error {
	if !m.madeVLANs[name] {
		return nil
	}
	for _, b := range m.bound {
		if b.iface == name {
			return nil
		}
	}
	if ifc, ok := m.ifaces[name]; ok {
		ifc.cancel()
		delete(m.ifaces, name)
	}
	delete(m.madeVLANs, name)
	if err := m.writeJournalLocked(); err != nil {
		m.log.Warn("cannot write VIP journal", "err", err)
	}
	m.log.Info("VLAN link deleted: no VIP uses it", "interface", name)
	return netif.DeleteVLAN(netif.Handle(), name)
}

// madeVLANList lists the VLAN links this manager made, sorted; mu held.
func (m *Manager) madeVLANList() []string {
	out := make([]string, 0, len(m.madeVLANs))
	for n := range m.madeVLANs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

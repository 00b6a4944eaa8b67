package vip

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vigil-lb/vigil/pkg/netif"
)

// MacvlanPrefix starts the name of every macvlan vigil creates for a DHCP
// address; Recover deletes leftovers with it.
const MacvlanPrefix = "vglm"

// DHCPClient keeps one DHCP lease alive on one interface (pkg/dhcp).
type DHCPClient interface {
	Run(ctx context.Context) error
	Addr() (netip.Addr, bool) // the leased address, while the lease is valid
	Release() error
	Close() error
}

// NewDHCPClient opens a DHCP client on iface. onChange must only enqueue.
type NewDHCPClient func(iface, hostname string, requested netip.Addr, onChange func()) (DHCPClient, error)

// DHCPParams describe the address one Service gets from DHCP.
type DHCPParams struct {
	MAC         net.HardwareAddr // the macvlan's MAC: stable per Service, so it gets the same lease
	Hostname    string           // option 12
	RequestedIP netip.Addr       // the address it had (option 50)
}

type dhcpSession struct {
	link   string
	mac    string
	client DHCPClient
	cancel context.CancelFunc
	done   chan struct{}
	addr   netip.Addr // bound on link
}

// MacvlanName is the macvlan used for key's DHCP address.
func MacvlanName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return MacvlanPrefix + hex.EncodeToString(sum[:4])
}

// EnsureDHCP makes sure key has a macvlan and a running DHCP client, and
// that the leased address (if there is one) is bound on the macvlan and
// announced, or withdrawn when the lease is gone. It returns the address
// currently up. The client's goroutine only notifies (Config.OnDHCPChange);
// everything on the node is done here, by the caller's worker.
func (m *Manager) EnsureDHCP(key string, p DHCPParams) (netip.Addr, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil {
		return netip.Addr{}, false, errors.New("vip: manager not running")
	}
	if m.cfg.NewDHCP == nil {
		return netip.Addr{}, false, errors.New("vip: no DHCP client configured")
	}
	s, ok := m.dhcp[key]
	if ok && s.mac != p.MAC.String() {
		// The Service's MAC changed (kube-vip.io/hwaddr edited): start over.
		if err := m.stopDHCPLocked(key, s); err != nil {
			return netip.Addr{}, false, err
		}
		ok = false
	}
	if !ok {
		var err error
		if s, err = m.startDHCP(key, p); err != nil {
			return netip.Addr{}, false, err
		}
	}
	addr, leased := s.client.Addr()
	if s.addr.IsValid() && (!leased || addr != s.addr) {
		if err := m.downLocked(s.addr); err != nil {
			return netip.Addr{}, false, err
		}
		s.addr = netip.Addr{}
	}
	if !leased {
		return netip.Addr{}, false, nil
	}
	if err := m.upOn(s.link, addr); err != nil {
		return netip.Addr{}, false, err
	}
	s.addr = addr
	return addr, true, nil
}

func (m *Manager) startDHCP(key string, p DHCPParams) (*dhcpSession, error) {
	parent := m.cfg.Interface
	if parent == "" {
		var err error
		if parent, err = netif.DefaultRouteInterface(nil); err != nil {
			return nil, fmt.Errorf("vip: DHCP macvlan parent: %w", err)
		}
	}
	name := MacvlanName(key)
	if _, err := netif.AddMacvlan(nil, parent, name, p.MAC); err != nil {
		return nil, err
	}
	// Only the macvlan may answer ARP for its address, not the parent.
	if err := netif.IsolateARP(parent); err != nil {
		m.log.Warn("cannot isolate ARP on the macvlan parent", "interface", parent, "err", err)
	}
	client, err := m.cfg.NewDHCP(name, p.Hostname, p.RequestedIP, func() {
		if m.cfg.OnDHCPChange != nil {
			m.cfg.OnDHCPChange(key)
		}
	})
	if err != nil {
		_, _ = netif.DeleteLink(nil, name)
		return nil, fmt.Errorf("vip: DHCP client on %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(m.ctx)
	s := &dhcpSession{link: name, mac: p.MAC.String(), client: client, cancel: cancel, done: make(chan struct{})}
	m.dhcp[key] = s
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(s.done)
		if err := client.Run(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("DHCP client stopped", "service", key, "interface", name, "err", err)
		}
	}()
	m.log.Info("DHCP client started", "service", key, "interface", name, "mac", p.MAC.String())
	return s, nil
}

// StopDHCP withdraws key's DHCP address, releases the lease (DHCPRELEASE),
// and removes the macvlan. Idempotent.
func (m *Manager) StopDHCP(key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.dhcp[key]
	if !ok {
		return nil
	}
	return m.stopDHCPLocked(key, s)
}

func (m *Manager) stopDHCPLocked(key string, s *dhcpSession) error {
	var errs []error
	if s.addr.IsValid() {
		errs = append(errs, m.downLocked(s.addr))
	}
	s.cancel()
	<-s.done
	if _, ok := s.client.Addr(); ok {
		if err := s.client.Release(); err != nil {
			errs = append(errs, fmt.Errorf("DHCP release on %s: %w", s.link, err))
		} else {
			m.log.Info("DHCP lease released", "service", key, "interface", s.link)
		}
	}
	errs = append(errs, s.client.Close())
	if ifc, ok := m.ifaces[s.link]; ok {
		ifc.cancel()
		delete(m.ifaces, s.link)
	}
	if _, err := netif.DeleteLink(nil, s.link); err != nil {
		errs = append(errs, err)
	}
	delete(m.dhcp, key)
	return errors.Join(errs...)
}

// DHCPKeys lists the keys with a DHCP session, sorted.
func (m *Manager) DHCPKeys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]string, 0, len(m.dhcp))
	for k := range m.dhcp {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// removeStaleMacvlans deletes macvlans a previous run left behind.
func (m *Manager) removeStaleMacvlans() error {
	names, err := netif.LinksWithPrefix(nil, MacvlanPrefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if _, err := netif.DeleteLink(nil, n); err != nil {
			errs = append(errs, err)
			continue
		}
		m.log.Info("removed macvlan left by a previous run", "interface", n)
	}
	return errors.Join(errs...)
}

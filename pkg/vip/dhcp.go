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
	"sync"
	"time"

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

// DHCPClientConfig is what a DHCP client is opened with.
type DHCPClientConfig struct {
	Interface string // the macvlan
	Hostname  string
	Requested netip.Addr
	Broadcast bool   // BOOTP broadcast flag
	OnChange  func() // must only enqueue
}

// NewDHCPClient opens a DHCP client.
type NewDHCPClient func(DHCPClientConfig) (DHCPClient, error)

// DHCPParams describe the address one Service gets from DHCP.
type DHCPParams struct {
	MAC         net.HardwareAddr // the macvlan's MAC: stable per Service, so it gets the same lease
	Hostname    string           // option 12
	RequestedIP netip.Addr       // the address it had (option 50)
	// Until bounds the leased address's kernel lifetime as Up's until
	// does: zero binds it permanently; otherwise EnsureDHCP must be called
	// again with a later Until to keep it, and fails with ErrTooLate (the
	// address withdrawn) when Until is too close.
	Until time.Time
	// Broadcast sets the BOOTP broadcast flag (kube-vip.io/dhcp-broadcast).
	Broadcast bool
	// RPFilter, when not nil, is written to the macvlan's rp_filter (0-2;
	// kube-vip.io/rp_filter).
	RPFilter *int
	// Macvlan names the macvlan (kube-vip.io/macvlanName) instead of
	// vglm<hash>: Services naming the same one share it, its DHCP client
	// and its address (the first Service's MAC and settings).
	Macvlan string
}

// setup is what a session was started with; another one starts it over.
func (p DHCPParams) setup() string {
	rp := -1
	if p.RPFilter != nil {
		rp = *p.RPFilter
	}
	return fmt.Sprintf("%s broadcast=%t rp_filter=%d", p.MAC, p.Broadcast, rp)
}

type dhcpSession struct {
	link   string
	named  bool   // Macvlan given: journaled, as Recover cannot know it
	users  *users // the Services on it
	setup  string // DHCPParams.setup()
	client DHCPClient
	cancel context.CancelFunc
	done   chan struct{}
	addr   netip.Addr // bound on link
}

// users are the Services sharing a session; read by the client's
// goroutine (OnChange), so it has its own lock.
type users struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (u *users) set(key string, on bool) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if on {
		u.keys[key] = true
	} else {
		delete(u.keys, key)
	}
	return len(u.keys)
}

func (u *users) list() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]string, 0, len(u.keys))
	for k := range u.keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
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
	if m.cfg.NewDHCP == nil {
		return netip.Addr{}, false, errors.New("vip: no DHCP client configured")
	}
	s, err := m.session(key, p)
	if err != nil {
		return netip.Addr{}, false, err
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
	if err := m.upOn(s.link, addr, p.Until); err != nil {
		return netip.Addr{}, false, err
	}
	s.addr = addr
	return addr, true, nil
}

// session returns key's DHCP session: its own, or the one on the macvlan
// it names; one that no longer fits (another macvlan, or its own with
// other settings) is stopped first. mu must be held.
func (m *Manager) session(key string, p DHCPParams) (*dhcpSession, error) {
	link := p.Macvlan
	if link == "" {
		link = MacvlanName(key)
	}
	s, ok := m.dhcp[key]
	if ok && (s.link != link || (s.setup != p.setup() && len(s.users.list()) == 1)) {
		if err := m.stopDHCPLocked(key, s); err != nil {
			return nil, err
		}
		ok = false
	}
	if ok {
		return s, nil
	}
	for _, o := range m.dhcp {
		if o.link == link {
			o.users.set(key, true)
			m.dhcp[key] = o
			return o, nil
		}
	}
	return m.startDHCP(key, link, p)
}

func (m *Manager) startDHCP(key, name string, p DHCPParams) (*dhcpSession, error) {
	if err := m.addMacvlan(name, p); err != nil {
		return nil, err
	}
	u := &users{keys: map[string]bool{key: true}}
	client, err := m.cfg.NewDHCP(DHCPClientConfig{
		Interface: name, Hostname: p.Hostname, Requested: p.RequestedIP, Broadcast: p.Broadcast,
		OnChange: func() {
			for _, k := range u.list() {
				if m.cfg.OnDHCPChange != nil {
					m.cfg.OnDHCPChange(k)
				}
			}
		},
	})
	if err != nil {
		_, _ = netif.DeleteLink(nil, name)
		return nil, fmt.Errorf("vip: DHCP client on %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(m.ctx)
	s := &dhcpSession{link: name, named: p.Macvlan != "", users: u, setup: p.setup(), client: client, cancel: cancel, done: make(chan struct{})}
	m.dhcp[key] = s
	if s.named {
		m.journalLinks()
	}
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

// addMacvlan makes the DHCP macvlan name on the service interface (else
// the default-route interface), with p's MAC and rp_filter; only the
// macvlan answers ARP for its address. A name a Service gave must not be
// an existing link of another kind.
func (m *Manager) addMacvlan(name string, p DHCPParams) error {
	parent := m.cfg.Interface
	if parent == "" {
		var err error
		if parent, err = netif.DefaultRouteInterface(nil); err != nil {
			return fmt.Errorf("vip: DHCP macvlan parent: %w", err)
		}
	}
	if p.Macvlan != "" {
		if err := netif.MacvlanOrAbsent(nil, name); err != nil {
			return fmt.Errorf("vip: kube-vip.io/macvlanName: %w", err)
		}
	}
	if _, err := netif.AddMacvlan(nil, parent, name, p.MAC); err != nil {
		return err
	}
	if err := netif.IsolateARP(parent); err != nil {
		m.log.Warn("cannot isolate ARP on the macvlan parent", "interface", parent, "err", err)
	}
	if p.RPFilter != nil {
		if err := netif.SetRPFilter(name, *p.RPFilter); err != nil {
			m.log.Warn("cannot set rp_filter on the macvlan", "interface", name, "err", err)
		}
	}
	return nil
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
	delete(m.dhcp, key)
	if s.users.set(key, false) > 0 {
		return nil // other Services still use it
	}
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
	if s.named {
		m.journalLinks()
	}
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

// namedLinks lists the macvlans named by Services (kube-vip.io/macvlanName)
// this manager made; mu must be held.
func (m *Manager) namedLinks() []string {
	var out []string
	for _, s := range m.dhcp {
		if s.named && !slices.Contains(out, s.link) {
			out = append(out, s.link)
		}
	}
	slices.Sort(out)
	return out
}

// journalLinks rewrites the journal with the named macvlans; mu must be
// held.
func (m *Manager) journalLinks() {
	if err := m.writeJournalLocked(); err != nil {
		m.log.Warn("cannot write VIP journal", "err", err)
	}
}

// removeNamedMacvlan deletes a Service-named macvlan a previous run left
// (only if it still is a macvlan).
func (m *Manager) removeNamedMacvlan(name string) error {
	if err := netif.MacvlanOrAbsent(nil, name); err != nil {
		m.log.Warn("not removing journaled macvlan", "interface", name, "err", err)
		return nil
	}
	deleted, err := netif.DeleteLink(nil, name)
	if deleted {
		m.log.Info("removed macvlan left by a previous run", "interface", name)
	}
	return err
}

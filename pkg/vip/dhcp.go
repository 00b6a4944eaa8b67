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

// linkLocalWait bounds the wait for a new macvlan's IPv6 link-local address
// (DHCPv6 and NDP speak from it).
const linkLocalWait = 2 * time.Second

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
	IPv6      bool   // DHCPv6 (one IA_NA address) instead of DHCPv4
	OnChange  func() // must only enqueue
}

// NewDHCPClient opens a DHCP client.
type NewDHCPClient func(DHCPClientConfig) (DHCPClient, error)

// DHCPParams describe the addresses one Service gets from DHCP.
type DHCPParams struct {
	MAC      net.HardwareAddr // the macvlan's MAC (and DHCPv6 DUID-LL): stable per Service, so it gets the same lease
	Hostname string           // option 12 (DHCPv6: the FQDN option)
	// IPv4 and IPv6 are the families to lease (DHCPv4, DHCPv6); at least
	// one.
	IPv4, IPv6 bool
	// Requested are the addresses it had, at most one per family (option
	// 50, the IA_NA hint).
	Requested []netip.Addr
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
	return fmt.Sprintf("%s ipv4=%t ipv6=%t broadcast=%t rp_filter=%d", p.MAC, p.IPv4, p.IPv6, p.Broadcast, rp)
}

// requested is the address of family v6 in p.Requested, if any.
func (p DHCPParams) requested(v6 bool) netip.Addr {
	for _, a := range p.Requested {
		if a.Unmap().Is6() == v6 {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

type dhcpSession struct {
	link   string
	named  bool   // Macvlan given: journaled, as Recover cannot know it
	users  *users // the Services on it
	setup  string // DHCPParams.setup()
	leases []*leased
	cancel context.CancelFunc
	done   chan struct{} // closed when every client's Run has returned
}

// leased is one family's client in a session and the address it leased
// that is bound on the session's link.
type leased struct {
	client DHCPClient
	addr   netip.Addr
}

// holds tells whether addr is one of the session's bound addresses.
func (s *dhcpSession) holds(addr netip.Addr) bool {
	for _, l := range s.leases {
		if l.addr.IsValid() && l.addr == addr {
			return true
		}
	}
	return false
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

// EnsureDHCP makes sure key has a macvlan and a running DHCP client per
// family, and that each leased address is bound on the macvlan and
// announced, or withdrawn when its lease is gone. It returns the addresses
// currently up (IPv4 first). The clients' goroutines only notify
// (Config.OnDHCPChange); everything on the node is done here, by the
// caller's worker.
func (m *Manager) EnsureDHCP(key string, p DHCPParams) ([]netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg.NewDHCP == nil {
		return nil, errors.New("vip: no DHCP client configured")
	}
	s, err := m.session(key, p)
	if err != nil {
		return nil, err
	}
	var up []netip.Addr
	for _, l := range s.leases {
		addr, err := m.ensureLeased(s.link, l, p.Until)
		if err != nil {
			return up, err
		}
		if addr.IsValid() {
			up = append(up, addr)
		}
	}
	return up, nil
}

// ensureLeased binds l's leased address on link (withdrawing the one it
// replaces) and returns it, or the zero Addr without a lease; mu must be
// held.
func (m *Manager) ensureLeased(link string, l *leased, until time.Time) (netip.Addr, error) {
	addr, ok := l.client.Addr()
	if l.addr.IsValid() && (!ok || addr != l.addr) {
		if err := m.downLocked(l.addr); err != nil {
			return netip.Addr{}, err
		}
		l.addr = netip.Addr{}
	}
	if !ok {
		return netip.Addr{}, nil
	}
	if err := m.upOn(link, addr, until, nil); err != nil {
		return netip.Addr{}, err
	}
	l.addr = addr
	return addr, nil
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
	leases, err := m.openClients(name, p, u)
	if err != nil {
		_, _ = netif.DeleteLink(nil, name)
		return nil, err
	}
	ctx, cancel := context.WithCancel(m.ctx)
	s := &dhcpSession{link: name, named: p.Macvlan != "", users: u, setup: p.setup(), leases: leases, cancel: cancel, done: make(chan struct{})}
	m.dhcp[key] = s
	if s.named {
		m.journalLinks()
	}
	var runs sync.WaitGroup
	for _, l := range leases {
		runs.Go(func() {
			if err := l.client.Run(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("DHCP client stopped", "service", key, "interface", name, "err", err)
			}
		})
	}
	m.wg.Go(func() {
		runs.Wait()
		close(s.done)
	})
	m.log.Info("DHCP client started", "service", key, "interface", name, "mac", p.MAC.String(), "ipv4", p.IPv4, "ipv6", p.IPv6)
	return s, nil
}

// openClients opens a DHCP client on link for each family p asks for
// (IPv4 first); on failure the ones opened are closed.
func (m *Manager) openClients(link string, p DHCPParams, u *users) ([]*leased, error) {
	var out []*leased
	for _, v6 := range []bool{false, true} {
		if (v6 && !p.IPv6) || (!v6 && !p.IPv4) {
			continue
		}
		c, err := m.cfg.NewDHCP(DHCPClientConfig{
			Interface: link, Hostname: p.Hostname, Requested: p.requested(v6), Broadcast: p.Broadcast, IPv6: v6,
			OnChange: func() {
				for _, k := range u.list() {
					if m.cfg.OnDHCPChange != nil {
						m.cfg.OnDHCPChange(k)
					}
				}
			},
		})
		if err != nil {
			for _, l := range out {
				_ = l.client.Close() // unused; the open error is the one to report
			}
			return nil, fmt.Errorf("vip: DHCP client on %s: %w", link, err)
		}
		out = append(out, &leased{client: c})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("vip: DHCP on %s: no address family asked for", link)
	}
	return out, nil
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
	if p.IPv6 {
		// DHCPv6 speaks from the link-local address: usable at once
		// rather than after a second or two of DAD (its MAC is the
		// Service's own).
		ctx, cancel := context.WithTimeout(m.ctx, linkLocalWait)
		defer cancel()
		if err := netif.SkipDAD(ctx, nil, name); err != nil {
			m.log.Warn("cannot skip DAD on the macvlan; DHCPv6 starts after it", "interface", name, "err", err)
		}
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
	for _, l := range s.leases {
		if l.addr.IsValid() {
			errs = append(errs, m.downLocked(l.addr))
		}
	}
	s.cancel()
	<-s.done
	for _, l := range s.leases {
		errs = append(errs, m.release(key, s.link, l.client))
	}
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

// release gives c's lease back, if it has one, and closes c.
func (m *Manager) release(key, link string, c DHCPClient) error {
	var errs []error
	if addr, ok := c.Addr(); ok {
		if err := c.Release(); err != nil {
			errs = append(errs, fmt.Errorf("DHCP release of %s on %s: %w", addr, link, err))
		} else {
			m.log.Info("DHCP lease released", "service", key, "interface", link, "addr", addr)
		}
	}
	return errors.Join(append(errs, c.Close())...)
}

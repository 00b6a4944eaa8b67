package vip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vigil-lb/vigil/pkg/announce"
	"github.com/vigil-lb/vigil/pkg/netif"
)

// Config is the dataplane's own configuration.
type Config struct {
	// Interface to bind VIPs on; "" or "auto" picks, per VIP, the interface
	// whose on-link subnet contains it.
	Interface string
	// Journal is the file recording bound VIPs ("" = no journal).
	Journal  string
	Announce announce.Options
	// NewDHCP opens DHCP clients for Services that ask for 0.0.0.0; nil
	// turns DHCP off.
	NewDHCP NewDHCPClient
	// OnDHCPChange is called when a Service's DHCP lease changes; it must
	// only enqueue.
	OnDHCPChange func(key string)
}

// Manager binds and announces VIPs.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	ctx    context.Context // Run's; announcer goroutines live under it
	ifaces map[string]*iface
	bound  map[netip.Addr]string // VIP -> interface
	wg     sync.WaitGroup
	ready  chan struct{} // closed when Run has started
	dhcp   map[string]*dhcpSession
}

type iface struct {
	link   *netif.Link
	ann    *announce.Announcer
	cancel context.CancelFunc // stops ann's goroutine
}

// New returns a Manager; call Recover, then Run, before Up.
func New(cfg Config, log *slog.Logger) *Manager {
	if cfg.Interface == "auto" {
		cfg.Interface = ""
	}
	if log == nil {
		log = slog.Default()
	}
	return &Manager{cfg: cfg, log: log, ifaces: map[string]*iface{}, bound: map[netip.Addr]string{}, ready: make(chan struct{}), dhcp: map[string]*dhcpSession{}}
}

type journalEntry struct {
	Interface string     `json:"interface"`
	Addr      netip.Addr `json:"addr"`
}

// Recover removes every VIP recorded in the journal by a previous run (the
// agent was killed, or the node rebooted with addresses configured) and
// empties it. It returns the addresses it removed.
func (m *Manager) Recover() ([]netip.Addr, error) {
	if err := m.removeStaleMacvlans(); err != nil {
		return nil, fmt.Errorf("remove stale macvlans: %w", err)
	}
	if m.cfg.Journal == "" {
		return nil, nil
	}
	b, err := os.ReadFile(m.cfg.Journal)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var entries []journalEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		m.log.Warn("ignoring unreadable VIP journal", "path", m.cfg.Journal, "err", err)
		entries = nil
	}
	var removed []netip.Addr
	var errs []error
	for _, e := range entries {
		l, err := netif.Open(e.Interface)
		if err != nil {
			continue // interface gone: nothing to remove
		}
		ok, err := l.Unbind(e.Addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			removed = append(removed, e.Addr)
			m.log.Info("removed VIP left by a previous run", "vip", e.Addr, "interface", e.Interface)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, err
	}
	return removed, m.writeJournal(nil)
}

// Run owns the announcers' goroutines; it returns when ctx ends, after they
// stopped. VIPs stay bound: the caller withdraws them first on shutdown.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	close(m.ready)
	<-ctx.Done()
	m.wg.Wait()
	return nil
}

// Ready is closed once Run has started; Up fails before that.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Up binds addr (idempotent) and announces it at once.
func (m *Manager) Up(addr netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil {
		return errors.New("vip: manager not running")
	}
	name := m.cfg.Interface
	if cur, ok := m.bound[addr]; ok {
		name = cur
	}
	if name == "" {
		n, err := netif.InterfaceFor(nil, addr)
		if err != nil {
			return fmt.Errorf("vip %s: %w", addr, err)
		}
		name = n
	}
	return m.upOn(name, addr)
}

// upOn binds addr on interface name and announces it; mu must be held.
func (m *Manager) upOn(name string, addr netip.Addr) error {
	ifc, err := m.iface(name)
	if err != nil {
		return err
	}
	// Journal first: a crash right after the bind must not leave an
	// address the next run does not know about.
	_, had := m.bound[addr]
	m.bound[addr] = name
	if !had {
		if err := m.writeJournalLocked(); err != nil {
			m.log.Warn("cannot write VIP journal", "err", err)
		}
	}
	if _, err := ifc.link.Bind(addr); err != nil {
		if !had {
			delete(m.bound, addr)
		}
		return fmt.Errorf("bind %s on %s: %w", addr, name, err)
	}
	// Only announce an address we are not already announcing: Up is
	// called again on every reconcile.
	if !had || !slices.Contains(ifc.ann.Addrs(), addr) {
		if err := ifc.ann.Add(addr); err != nil {
			return fmt.Errorf("announce %s on %s: %w", addr, name, err)
		}
	}
	return nil
}

// Down stops announcing addr and removes it (idempotent).
func (m *Manager) Down(addr netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.downLocked(addr)
}

func (m *Manager) downLocked(addr netip.Addr) error {
	name, ok := m.bound[addr]
	if !ok {
		return nil
	}
	ifc := m.ifaces[name]
	ifc.ann.Remove(addr)
	if _, err := ifc.link.Unbind(addr); err != nil {
		return fmt.Errorf("unbind %s from %s: %w", addr, name, err)
	}
	delete(m.bound, addr)
	if err := m.writeJournalLocked(); err != nil {
		m.log.Warn("cannot write VIP journal", "err", err)
	}
	return nil
}

// Bound returns the VIPs this manager has bound, sorted.
func (m *Manager) Bound() []netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]netip.Addr, 0, len(m.bound))
	for a := range m.bound {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// iface opens (once) the link and announcer for name; mu must be held.
func (m *Manager) iface(name string) (*iface, error) {
	if ifc, ok := m.ifaces[name]; ok {
		return ifc, nil
	}
	l, err := netif.Open(name)
	if err != nil {
		return nil, err
	}
	ni, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	ann, err := announce.Open(ni, m.cfg.Announce)
	if err != nil {
		return nil, fmt.Errorf("announcer on %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(m.ctx)
	ifc := &iface{link: l, ann: ann, cancel: cancel}
	m.ifaces[name] = ifc
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		_ = ann.Run(ctx)
	}()
	return ifc, nil
}

func (m *Manager) writeJournalLocked() error {
	entries := make([]journalEntry, 0, len(m.bound))
	for a, n := range m.bound {
		entries = append(entries, journalEntry{Interface: n, Addr: a})
	}
	slices.SortFunc(entries, func(a, b journalEntry) int { return a.Addr.Compare(b.Addr) })
	return m.writeJournal(entries)
}

func (m *Manager) writeJournal(entries []journalEntry) error {
	if m.cfg.Journal == "" {
		return nil
	}
	if entries == nil {
		entries = []journalEntry{}
	}
	b, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(m.cfg.Journal), 0o755); err != nil {
		return err
	}
	tmp := m.cfg.Journal + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, m.cfg.Journal)
}

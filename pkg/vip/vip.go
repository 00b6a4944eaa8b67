package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/internal/journal"
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
	// Clock is the time source of Up's lifetimes and of the
	// announcers (unless Announce.Clock is set); nil = clock.Real{}.
	Clock clock.Clock
	// LapseSlack is how late the kernel may remove an address after its
	// lifetime; 0 = netif.LapseSlack.
	LapseSlack time.Duration
	// Silencer keeps the node from answering ARP for the addresses given
	// (pkg/arpguard); nil: Preserve removes addresses like Down.
	Silencer Silencer
}

// Silencer keeps exactly the given IPv4 addresses from being answered by
// ARP on this node.
type Silencer interface {
	Set(addrs []netip.Addr) error
}

// bindBudget is how long the bind call itself may take (from reading the
// clock to the kernel stamping the lifetime) before Up no longer
// trusts the lifetime it asked for and withdraws the address.
const bindBudget = 200 * time.Millisecond

// ErrTooLate is returned (wrapped) by Up when until is too close to
// bind addr with a kernel lifetime of at least one second that still ends,
// with the kernel's slack, by until. Up has then withdrawn addr.
var ErrTooLate = errors.New("too late to bind with a lifetime that ends in time")

// Manager binds and announces VIPs.
type Manager struct {
	cfg Config
	log *slog.Logger

	clock clock.Clock
	slack time.Duration // kernel lapse slack

	mu     sync.Mutex
	ctx    context.Context // Run's; announcer goroutines live under it
	ifaces map[string]*iface
	bound  map[netip.Addr]binding
	wg     sync.WaitGroup
	stop   context.CancelFunc // ends ctx; called when Run's context ends
	dhcp   map[string]*dhcpSession
	// pinned: addresses bound on a named interface instead of
	// Config.Interface (a Service's kube-vip.io/serviceInterface); "" in
	// the map means by subnet.
	pinned map[netip.Addr]string
	repick map[netip.Addr]bool // the choice changed since it was bound
	// vlans: links asked for by UseVLAN; madeVLANs: those this manager
	// created (deleted with their last address).
	vlans     map[string]vlan
	madeVLANs map[string]bool
}

// binding is one VIP this Manager bound.
type binding struct {
	iface string
	end   time.Time // its kernel lifetime ends (zero: permanent)
	// preserved: kept bound after this node stopped announcing it, never
	// answered by ARP (Preserve); not Bound.
	preserved bool
}

// lapsed reports whether b's lifetime has ended at now.
func (b binding) lapsed(now time.Time) bool {
	return !b.end.IsZero() && !now.Before(b.end)
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
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Announce.Clock == nil {
		cfg.Announce.Clock = cfg.Clock
	}
	if cfg.LapseSlack <= 0 {
		cfg.LapseSlack = netif.LapseSlack
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Manager{
		cfg: cfg, log: log, clock: cfg.Clock, slack: cfg.LapseSlack, ctx: ctx, stop: stop,
		ifaces: map[string]*iface{}, bound: map[netip.Addr]binding{}, dhcp: map[string]*dhcpSession{},
		pinned: map[netip.Addr]string{}, repick: map[netip.Addr]bool{},
		vlans: map[string]vlan{}, madeVLANs: map[string]bool{},
	}
}

// journalEntry is a VIP bound on an interface, or (Macvlan) a macvlan
// named by a Service that a crash would leave behind.
type journalEntry struct {
	Interface string     `json:"interface"`
	Addr      netip.Addr `json:"addr"`
	Macvlan   string     `json:"macvlan,omitempty"`
	VLAN      string     `json:"vlan,omitempty"` // a VLAN link this agent made
}

// Recover removes every VIP recorded in the journal by a previous run (the
// agent was killed, or the node rebooted with addresses configured) and
// empties it. It returns the addresses it removed.
func (m *Manager) Recover() ([]netip.Addr, error) {
	if err := m.removeStaleMacvlans(); err != nil {
		return nil, fmt.Errorf("remove stale macvlans: %w", err)
	}
	entries, err := journal.Load[journalEntry](m.cfg.Journal)
	switch {
	case errors.Is(err, journal.ErrUnreadable):
		m.log.Warn("ignoring unreadable VIP journal", "path", m.cfg.Journal, "err", err)
	case err != nil:
		return nil, fmt.Errorf("read journal: %w", err)
	case entries == nil:
		return nil, nil // no journal: nothing left behind
	}
	var removed []netip.Addr
	var errs []error
	var vlans []string
	for _, e := range entries {
		if e.Macvlan != "" {
			errs = append(errs, m.removeNamedMacvlan(e.Macvlan))
			continue
		}
		if e.VLAN != "" {
			vlans = append(vlans, e.VLAN) // deleted after its addresses
			continue
		}
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
	for _, v := range vlans {
		errs = append(errs, netif.DeleteVLAN(netif.Handle(), v))
	}
	if err := errors.Join(errs...); err != nil {
		return removed, err
	}
	return removed, m.writeJournal(nil)
}

// Run owns the announcers' and DHCP clients' goroutines (Up and EnsureDHCP
// may start them before Run is called): when ctx ends it stops them and
// returns once they are gone. VIPs stay bound: the caller withdraws them
// first on shutdown.
func (m *Manager) Run(ctx context.Context) error {
	<-ctx.Done()
	m.stop()
	m.wg.Wait()
	return nil
}

// Up binds addr (idempotent) or refreshes it so that the kernel removes it
// by until at the latest, even if this process never runs again (stopped,
// killed, deadlocked), and announces it at once unless it is announced
// already. A zero until binds permanently. (EnsureDHCP takes the same
// bound in DHCPParams.Until.)
//
// The kernel lifetime is whole seconds: floor((until - now - LapseSlack -
// bindBudget) / 1s). If that is under one second, Up changes nothing and
// returns an error wrapping ErrTooLate: an address not bound is not bound,
// and a bound one keeps the lifetime of its last refresh, which ends (with
// the kernel's slack) by the until it was refreshed with, so the holder
// keeps answering up to its renew deadline and never past it. If the bind
// call itself took longer than bindBudget (the process was stopped in it),
// the kernel's lifetime started late: Up withdraws addr at once and returns
// ErrTooLate.
//
// A refresh changes the lifetime in place (no gap) and sends nothing; one
// that would gain less than a second changes nothing (see Refresh). The
// announcer's periodic refresh carries the same end and stops by itself
// when the lifetime ends, so a process resumed after its VIPs lapsed never
// announces them again unless Up is called with a valid until. An address
// whose lifetime ended is no longer Bound (and is removed, in case the
// kernel is late); the next Up binds and announces it afresh.
func (m *Manager) Up(addr netip.Addr, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked()
	if m.lasts(addr, until) {
		return nil
	}
	return m.upLocked(addr, until, nil)
}

// lasts reports whether Up(addr, until) may leave addr as it is, without
// reading the kernel's addresses: a bind now would extend its lifetime by
// less than a second (see gain). The caller's periodic Refresh gains that
// second (and puts back an address someone removed). mu must be held.
func (m *Manager) lasts(addr netip.Addr, until time.Time) bool {
	g, ok := m.gain(addr, until)
	return ok && g < time.Second
}

// gain is how much later a bind now would end addr's lifetime; ok is false
// when addr must go through a bind whatever the gain: not bound here (or
// preserved, or permanent, or asked to be), not where it belongs, holding
// a lifetime that until no longer covers (a shorter term: the bind
// shortens it), or too close to until for any lifetime (ErrTooLate). mu
// must be held.
func (m *Manager) gain(addr netip.Addr, until time.Time) (g time.Duration, ok bool) {
	b, bound := m.bound[addr]
	if !bound || b.preserved || b.end.IsZero() || until.IsZero() || m.repick[addr] {
		return 0, false
	}
	if name, err := m.interfaceFor(addr); err != nil || name != b.iface {
		return 0, false
	}
	if b.end.Add(m.slack + bindBudget).After(until) {
		return 0, false
	}
	now := m.clock.Now()
	lifetime := until.Sub(now) - m.slack - bindBudget
	if lifetime < time.Second {
		return 0, false // binding tells ErrTooLate
	}
	return now.Add(lifetime.Truncate(time.Second)).Sub(b.end), true
}

// Refresh is Up for every address of until, reading each interface's
// addresses once for all of them instead of once per address: the
// periodic extension of every VIP a node holds. It puts back an address
// someone removed; one still on its interface is bound again only when
// that makes its lifetime end later, and, while more than refreshFloor of
// it is left, only by a second or more (a node holding hundreds of VIPs
// would otherwise send as many netlink requests on every call, most of
// them changing nothing). It returns the error of each address that
// failed.
func (m *Manager) Refresh(until map[netip.Addr]time.Time) map[netip.Addr]error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked()
	d := dumps{}
	errs := map[netip.Addr]error{}
	for addr, u := range until {
		if m.keeps(addr, u, d) {
			continue
		}
		if err := m.upLocked(addr, u, d); err != nil {
			errs[addr] = err
		}
	}
	return errs
}

// refreshFloor is the remaining lifetime under which Refresh binds an
// address again even when that gains it less than a second: the caller's
// next Refresh may come too late.
const refreshFloor = 2 * time.Second

// keeps reports whether Refresh may leave addr as it is: d's dump of its
// interface found it, and a bind would not end its lifetime later, or
// (more than refreshFloor of it left) by less than a second. mu must be
// held.
func (m *Manager) keeps(addr netip.Addr, until time.Time, d dumps) bool {
	g, ok := m.gain(addr, until)
	b := m.bound[addr]
	if !ok || g >= time.Second || (g > 0 && b.end.Sub(m.clock.Now()) <= refreshFloor) {
		return false
	}
	snap, err := d.of(b.iface, m.ifaces[b.iface])
	return err == nil && snap.Has(addr)
}

// upLocked is Up with the interfaces' addresses read from d (nil: dumped
// for this address alone); mu must be held.
func (m *Manager) upLocked(addr netip.Addr, until time.Time, d dumps) error {
	name, err := m.interfaceFor(addr)
	if err != nil {
		return err
	}
	if err := m.unpreserveLocked(addr); err != nil {
		return fmt.Errorf("vip %s: lift its ARP silence: %w", addr, err)
	}
	if cur, ok := m.bound[addr]; ok && cur.iface != name {
		m.log.Info("moving VIP to another interface", "vip", addr, "from", cur.iface, "to", name)
		d.forget(cur.iface)
		if err := m.downLocked(addr); err != nil {
			return err
		}
	}
	delete(m.repick, addr)
	return m.upOn(name, addr, until, d)
}

// dumps holds one netif.Snapshot per interface for a batch of binds; a nil
// dumps holds none (each bind dumps its interface).
type dumps map[string]*netif.Snapshot

// of returns the snapshot of ifc (name), dumping it on first use; nil for
// a nil dumps.
func (d dumps) of(name string, ifc *iface) (*netif.Snapshot, error) {
	if d == nil {
		return nil, nil
	}
	if s, ok := d[name]; ok {
		return s, nil
	}
	s, err := ifc.link.Snapshot()
	if err != nil {
		return nil, err
	}
	d[name] = s
	return s, nil
}

// forget drops the snapshot of interface name, after a change BindForIn
// does not record (an address removed).
func (d dumps) forget(name string) { delete(d, name) }

// UseInterface makes Up bind addr on the interface name from now on
// instead of Config.Interface: "auto" picks the interface whose subnet
// holds addr, "" forgets the choice. An address bound elsewhere moves at
// its next Up.
func (m *Manager) UseInterface(addr netip.Addr, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, had := m.pinned[addr]
	switch name {
	case "":
		delete(m.pinned, addr)
	case "auto":
		m.pinned[addr] = ""
	default:
		m.pinned[addr] = name
	}
	if now, has := m.pinned[addr]; now != prev || has != had {
		m.repick[addr] = true
	}
}

// interfaceFor is where addr is to be bound: its pinned interface, else
// Config.Interface, else (either empty) the interface whose subnet holds
// it; mu must be held.
func (m *Manager) interfaceFor(addr netip.Addr) (string, error) {
	for _, s := range m.dhcp {
		if s.holds(addr) {
			return s.link, nil // a leased address lives on its macvlan
		}
	}
	name, ok := m.pinned[addr]
	if !ok {
		name = m.cfg.Interface
	}
	if name != "" {
		return name, nil
	}
	if cur, ok := m.bound[addr]; ok && !m.repick[addr] {
		return cur.iface, nil // by subnet: chosen when it was bound
	}
	n, err := netif.InterfaceFor(nil, addr)
	if err != nil {
		return "", fmt.Errorf("vip %s: %w", addr, err)
	}
	return n, nil
}

// upOn binds addr on interface name until until (zero: permanently), its
// addresses read from d, and announces it; mu must be held.
func (m *Manager) upOn(name string, addr netip.Addr, until time.Time, d dumps) error {
	if err := m.ensureVLANLocked(name); err != nil {
		return err
	}
	ifc, err := m.iface(name)
	if err != nil {
		return err
	}
	snap, err := d.of(name, ifc)
	if err != nil {
		return fmt.Errorf("vip %s: %w", addr, err)
	}
	added, end, err := m.bindInTime(ifc, snap, addr, until)
	if err != nil {
		return err
	}
	// Only announce an address we are not already announcing: Up is
	// called again on every reconcile and every lease renewal.
	if added || !ifc.ann.Extend(addr, end) {
		if err := ifc.ann.AddUntil(addr, end); err != nil {
			return fmt.Errorf("announce %s on %s: %w", addr, name, err)
		}
	}
	return nil
}

// bindInTime binds addr on ifc until until (zero: permanently) with a
// kernel lifetime that ends, with the kernel's slack, by until, and returns
// whether it was added and when its lifetime ends. A bind slower than
// bindBudget (a busy machine: 270 ms once in the fault campaign) may have
// been stamped too late for the lifetime asked: it is bound again at once
// with a lifetime from the clock after it; if that one is slow too, or
// fails, addr is withdrawn (ErrTooLate). mu must be held.
func (m *Manager) bindInTime(ifc *iface, snap *netif.Snapshot, addr netip.Addr, until time.Time) (added bool, end time.Time, err error) {
	added, end, took, err := m.bindFor(ifc, snap, addr, until)
	if err != nil || until.IsZero() || took <= bindBudget {
		return added, end, err
	}
	m.log.Info("slow VIP bind: binding again with a lifetime from the clock after it", "vip", addr, "took", took)
	again, end, took, err := m.bindFor(ifc, snap, addr, until)
	added = added || again
	switch {
	case err != nil:
		return added, end, m.tooLate(addr, until, fmt.Sprintf("a slow bind, then: %v", err))
	case took > bindBudget:
		return added, end, m.tooLate(addr, until, fmt.Sprintf("the bind took %v, twice", took))
	}
	return added, end, nil
}

// bindFor binds addr on ifc with a lifetime that ends, with the kernel's
// slack and bindBudget, by until (zero: permanently), and returns how long
// the bind took. With less than a second left it binds nothing and returns
// ErrTooLate (a bound addr lapses by itself). mu must be held.
func (m *Manager) bindFor(ifc *iface, snap *netif.Snapshot, addr netip.Addr, until time.Time) (added bool, end time.Time, took time.Duration, err error) {
	now := m.clock.Now()
	lifetime := time.Duration(0)
	if !until.IsZero() {
		lifetime = until.Sub(now) - m.slack - bindBudget
		if lifetime < time.Second {
			return false, time.Time{}, 0, m.noRefresh(addr, until, fmt.Sprintf("%v left", until.Sub(now)))
		}
		lifetime = lifetime.Truncate(time.Second)
		end = now.Add(lifetime)
	}
	added, err = m.bind(ifc, snap, addr, lifetime, end)
	return added, end, m.clock.Now().Sub(now), err
}

// bind records addr (journal first) and binds it on ifc with lifetime,
// ifc's addresses read from snap (nil: dumped now); mu must be held.
func (m *Manager) bind(ifc *iface, snap *netif.Snapshot, addr netip.Addr, lifetime time.Duration, end time.Time) (added bool, err error) {
	name := ifc.link.Name()
	// Journal first: a crash right after the bind must not leave an
	// address the next run does not know about.
	prev, had := m.bound[addr]
	m.bound[addr] = binding{iface: name, end: end}
	if !had {
		if err := m.writeJournalLocked(); err != nil {
			m.log.Warn("cannot write VIP journal", "err", err)
		}
	}
	added, err = ifc.link.BindForIn(snap, addr, lifetime)
	if err != nil {
		if had {
			m.bound[addr] = prev
		} else {
			delete(m.bound, addr)
		}
		return false, fmt.Errorf("bind %s on %s: %w", addr, name, err)
	}
	return added, nil
}

// noRefresh leaves addr as it is (a bound address lapses by itself, by the
// earlier until it was refreshed with; an unbound one is not bound) and
// returns ErrTooLate; mu must be held.
func (m *Manager) noRefresh(addr netip.Addr, until time.Time, why string) error {
	return fmt.Errorf("vip %s until %s (%s): %w", addr, until.Format(time.RFC3339Nano), why, ErrTooLate)
}

// tooLate withdraws addr and returns ErrTooLate; mu must be held.
func (m *Manager) tooLate(addr netip.Addr, until time.Time, why string) error {
	err := fmt.Errorf("vip %s until %s (%s): %w", addr, until.Format(time.RFC3339Nano), why, ErrTooLate)
	if _, ok := m.bound[addr]; ok {
		m.log.Warn("withdrawing VIP: its lease cannot cover a kernel lifetime", "vip", addr, "err", err)
	}
	return errors.Join(err, m.downLocked(addr))
}

// pruneLocked forgets the VIPs whose lifetime ended, and removes them now
// in case the kernel is late; mu must be held.
func (m *Manager) pruneLocked() {
	now := m.clock.Now()
	for addr, b := range m.bound {
		if !b.lapsed(now) {
			continue
		}
		m.log.Info("VIP lifetime ended without a refresh", "vip", addr, "interface", b.iface, "ended", b.end)
		if err := m.downLocked(addr); err != nil {
			m.log.Warn("cannot remove lapsed VIP", "vip", addr, "err", err)
		}
	}
}

// Down stops announcing addr and removes it (idempotent).
func (m *Manager) Down(addr netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.downLocked(addr)
}

func (m *Manager) downLocked(addr netip.Addr) error {
	b, ok := m.bound[addr]
	if !ok {
		return nil
	}
	name := b.iface
	ifc := m.ifaces[name]
	ifc.ann.Remove(addr)
	if _, err := ifc.link.Unbind(addr); err != nil {
		return fmt.Errorf("unbind %s from %s: %w", addr, name, err)
	}
	delete(m.bound, addr)
	if err := m.writeJournalLocked(); err != nil {
		m.log.Warn("cannot write VIP journal", "err", err)
	}
	if b.preserved { // gone first, then no longer silenced
		return errors.Join(m.silenceLocked(), m.dropVLANLocked(name))
	}
	return m.dropVLANLocked(name)
}

// Bound returns the VIPs this manager has bound, sorted; a VIP whose
// lifetime (Up) ended is not, and is removed.
func (m *Manager) Bound() []netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked()
	out := make([]netip.Addr, 0, len(m.bound))
	for a, b := range m.bound {
		if !b.preserved {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// IsBound reports whether addr is one of Bound, without listing them (or
// removing a lapsed one: Bound, Up and Refresh do).
func (m *Manager) IsBound(addr netip.Addr) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bound[addr]
	return ok && !b.preserved && !b.lapsed(m.clock.Now())
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
	for a, b := range m.bound {
		entries = append(entries, journalEntry{Interface: b.iface, Addr: a})
	}
	slices.SortFunc(entries, func(a, b journalEntry) int { return a.Addr.Compare(b.Addr) })
	for _, l := range m.namedLinks() {
		entries = append(entries, journalEntry{Macvlan: l})
	}
	for _, l := range m.madeVLANList() {
		entries = append(entries, journalEntry{VLAN: l})
	}
	return m.writeJournal(entries)
}

func (m *Manager) writeJournal(entries []journalEntry) error {
	return journal.Save(m.cfg.Journal, entries)
}

package announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// A Conn sends announcements of addresses on one interface. NewARP and
// NewNDP return the real ones; tests use fakes.
type Conn interface {
	// Announce sends one announcement of addr.
	Announce(addr netip.Addr) error
	Close() error
}

// Defaults for the zero Options fields.
const (
	DefaultBurst         = 3
	DefaultBurstInterval = 250 * time.Millisecond
	DefaultRefresh       = 3 * time.Second
)

// Options tune an Announcer. The zero value gives the defaults.
type Options struct {
	// Burst is how many announcements follow the immediate one, BurstInterval
	// apart. 0 means DefaultBurst; a negative value means none.
	Burst int
	// BurstInterval is the spacing of the burst; 0 or less means
	// DefaultBurstInterval.
	BurstInterval time.Duration
	// Refresh is the period of the announcements after the burst (kube-vip's
	// vip_arpRate); 0 or less means DefaultRefresh.
	Refresh time.Duration
	// OnSent, if not nil, is called after every announcement the Announcer
	// sends, with the error of that send (for metrics). It is called without
	// the Announcer's lock held, on the goroutine that sent (Add's caller or
	// Run), so it should return quickly.
	OnSent func(addr netip.Addr, err error)
	// Clock drives the schedule and the ends of AddUntil; nil means the
	// real clock. A caller computing ends from its own clock passes it.
	Clock clock
}

func (o Options) withDefaults() Options {
	switch {
	case o.Burst == 0:
		o.Burst = DefaultBurst
	case o.Burst < 0:
		o.Burst = 0
	}
	if o.BurstInterval <= 0 {
		o.BurstInterval = DefaultBurstInterval
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	return o
}

// An Announcer keeps announcing a set of addresses on one interface.
//
// Add and Remove may be called from any goroutine, before or while Run runs.
// Run drives the schedule; when it returns the Announcer is closed for good.
type Announcer struct {
	ifname string
	v4, v6 Conn
	v6Err  error // why v6 is nil, when Open could not open it
	opts   Options
	clock  clock
	wake   chan struct{} // capacity 1: the schedule changed

	// mu guards the fields below and is held during every send, so that
	// after Remove returns nothing more is sent for the address.
	mu      sync.Mutex
	entries map[netip.Addr]*entry
	running bool
	closed  bool
}

// entry is the schedule of one address.
type entry struct {
	burst int       // burst announcements still to send
	next  time.Time // when the next announcement is due
	until time.Time // no announcement at or after it; zero = no end
}

// over reports whether e's announcements have ended at now.
func (e *entry) over(now time.Time) bool {
	return !e.until.IsZero() && !now.Before(e.until)
}

// ErrExpired is returned (wrapped) by AddUntil for an end that has passed.
var ErrExpired = errors.New("announcement end has passed")

// sent is the outcome of one send, for Options.OnSent.
type sent struct {
	addr netip.Addr
	err  error
}

// New returns an Announcer for interface ifi that announces IPv4 addresses
// on v4 and IPv6 addresses on v6. Either Conn may be nil if that family is
// not used; Add then rejects addresses of that family. The Announcer owns
// the Conns: Run closes them when it returns.
func New(ifi *net.Interface, v4, v6 Conn, opts Options) *Announcer {
	var clk clock = realClock{}
	if opts.Clock != nil {
		clk = opts.Clock
	}
	return newAnnouncer(ifi, v4, v6, opts, clk)
}

func newAnnouncer(ifi *net.Interface, v4, v6 Conn, opts Options, clk clock) *Announcer {
	a := &Announcer{
		v4:      v4,
		v6:      v6,
		opts:    opts.withDefaults(),
		clock:   clk,
		wake:    make(chan struct{}, 1),
		entries: make(map[netip.Addr]*entry),
	}
	if ifi != nil {
		a.ifname = ifi.Name
	}
	return a
}

// Open returns an Announcer for ifi with an ARP Conn and, if ifi has an IPv6
// link-local address, an NDP Conn. Failing to open ARP is an error; failing
// to open NDP is not: the Announcer then serves IPv4 only, and Add of an
// IPv6 address returns an error that says why.
func Open(ifi *net.Interface, opts Options) (*Announcer, error) {
	v4, err := NewARP(ifi)
	if err != nil {
		return nil, err
	}
	v6, v6Err := NewNDP(ifi)
	a := New(ifi, v4, v6, opts)
	a.v6Err = v6Err
	return a, nil
}

// Add starts announcing addr. It sends one announcement at once, before it
// returns, then schedules the burst and the periodic refresh. Adding an
// address that is already announced sends at once again and restarts its
// burst, for when the VIP was bound again.
//
// An IPv4-mapped IPv6 address is announced as IPv4. Add rejects the zero,
// unspecified, multicast and zoned addresses, addresses of a family without
// a Conn, and any address once Run has returned. If only the immediate send
// fails, addr is still scheduled, so the burst retries it, and Add returns
// the send error.
func (a *Announcer) Add(addr netip.Addr) error {
	return a.AddUntil(addr, time.Time{})
}

// AddUntil is Add for an address that must not be announced at or after
// until, because it leaves the interface then (a kernel address lifetime
// ends): the Announcer drops addr at until by itself, checking the clock
// right before every send, so nothing is sent for addr from until on even
// if the process was stopped and resumed in between. A zero until means no
// end, as Add. If until has passed, AddUntil sends nothing, leaves addr's
// schedule alone and returns an error wrapping ErrExpired. Extend moves
// the end without sending.
func (a *Announcer) AddUntil(addr netip.Addr, until time.Time) error {
	addr = addr.Unmap()
	conn, err := a.conn(addr)
	if err != nil {
		return fmt.Errorf("announce: add %s on %s: %w", addr, a.ifname, err)
	}

	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return fmt.Errorf("announce: add %s on %s: announcer is stopped", addr, a.ifname)
	}
	now := a.clock.Now()
	e := &entry{burst: a.opts.Burst, until: until}
	if e.over(now) {
		a.mu.Unlock()
		return fmt.Errorf("announce: add %s on %s until %v: %w", addr, a.ifname, until, ErrExpired)
	}
	err = conn.Announce(addr)
	e.next = now.Add(a.interval(e))
	a.entries[addr] = e
	a.mu.Unlock()

	a.kick()
	a.report(sent{addr, err})
	if err != nil {
		return fmt.Errorf("announce: %s on %s: %w", addr, a.ifname, err)
	}
	return nil
}

// Remove stops announcing addr. Nothing is sent for addr after Remove
// returns. Removing an address that is not announced does nothing.
func (a *Announcer) Remove(addr netip.Addr) {
	addr = addr.Unmap()
	a.mu.Lock()
	_, ok := a.entries[addr]
	delete(a.entries, addr)
	a.mu.Unlock()
	if ok {
		a.kick()
	}
}

// Extend sets the end of addr's announcements to until (zero: no end),
// without sending anything and without restarting its burst. It returns
// false and changes nothing if addr is not announced: never added, removed,
// or its end has passed (then it is dropped); the caller must AddUntil it
// again. An until that has passed ends addr's announcements at once.
func (a *Announcer) Extend(addr netip.Addr, until time.Time) bool {
	addr = addr.Unmap()
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock.Now()
	e, ok := a.entries[addr]
	if !ok || e.over(now) {
		delete(a.entries, addr)
		return false
	}
	e.until = until
	if e.over(now) {
		delete(a.entries, addr)
		return false
	}
	return true
}

// Addrs returns the announced addresses, sorted; an address whose end
// (AddUntil, Extend) has passed is not.
func (a *Announcer) Addrs() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock.Now()
	var out []netip.Addr
	for addr, e := range a.entries {
		if !e.over(now) {
			out = append(out, addr)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Run sends the scheduled announcements until ctx is done, then stops the
// Announcer, closes its Conns and returns the error of closing them, if
// any. Failed sends do not stop Run; they are reported to Options.OnSent.
// Run may be called only once.
func (a *Announcer) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running || a.closed {
		a.mu.Unlock()
		return errors.New("announce: Run called more than once")
	}
	a.running = true
	a.mu.Unlock()

	t := a.clock.NewTimer()
	defer t.Stop()
	for ctx.Err() == nil {
		next, ok, out := a.sendDue()
		for _, s := range out {
			a.report(s)
		}
		var due <-chan time.Time
		if ok {
			t.Reset(next)
			due = t.C()
		} else {
			t.Stop()
		}
		select {
		case <-ctx.Done():
		case <-a.wake:
		case <-due:
		}
	}
	return a.close()
}

// sendDue sends the announcements that are due, advances their schedules
// and returns when the next one is due; ok is false if none is scheduled.
func (a *Announcer) sendDue() (next time.Time, ok bool, out []sent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock.Now()
	var due []netip.Addr
	for addr, e := range a.entries {
		if e.over(now) {
			delete(a.entries, addr) // its address has left the interface
			continue
		}
		if !e.next.After(now) {
			due = append(due, addr)
		}
	}
	slices.SortFunc(due, netip.Addr.Compare)
	for _, addr := range due {
		e := a.entries[addr]
		if e.over(a.clock.Now()) { // the sends before took that long
			delete(a.entries, addr)
			continue
		}
		conn, err := a.conn(addr)
		if err == nil {
			err = conn.Announce(addr)
		}
		out = append(out, sent{addr, err})
		if e.burst > 0 {
			e.burst--
		}
		e.next = now.Add(a.interval(e))
	}
	for _, e := range a.entries {
		if !ok || e.next.Before(next) {
			next, ok = e.next, true
		}
	}
	return next, ok, out
}

// interval returns how long after a send of e the next one is due.
func (a *Announcer) interval(e *entry) time.Duration {
	if e.burst > 0 {
		return a.opts.BurstInterval
	}
	return a.opts.Refresh
}

// conn returns the Conn for addr's family, or why addr cannot be announced.
func (a *Announcer) conn(addr netip.Addr) (Conn, error) {
	switch {
	case !addr.IsValid():
		return nil, errors.New("invalid (zero) address")
	case addr.IsUnspecified():
		return nil, errors.New("unspecified address")
	case addr.IsMulticast():
		return nil, errors.New("multicast address")
	case addr.Zone() != "":
		return nil, errors.New("zoned address")
	case addr.Is4():
		if a.v4 == nil {
			return nil, errors.New("no IPv4 (ARP) announcer")
		}
		return a.v4, nil
	default:
		if a.v6 == nil {
			if a.v6Err != nil {
				return nil, fmt.Errorf("no IPv6 (NDP) announcer: %w", a.v6Err)
			}
			return nil, errors.New("no IPv6 (NDP) announcer")
		}
		return a.v6, nil
	}
}

// kick tells Run that the schedule changed.
func (a *Announcer) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Announcer) report(s sent) {
	if a.opts.OnSent != nil {
		a.opts.OnSent(s.addr, s.err)
	}
}

// close stops the Announcer for good and closes its Conns.
func (a *Announcer) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	clear(a.entries)
	var errs []error
	for _, c := range []Conn{a.v4, a.v6} {
		if c != nil {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("announce: close on %s: %w", a.ifname, err)
	}
	return nil
}

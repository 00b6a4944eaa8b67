package upnp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// Timeouts of the Manager's network operations.
const (
	discoverTimeout = 3 * time.Second // one SSDP search
	requestTimeout  = 5 * time.Second // one SOAP request
)

// Config configures a Manager. The zero value works.
type Config struct {
	// OnChange is called from Run's goroutine after State(key) or
	// Draining(key) changed. It must not block; typically it enqueues key.
	// Changes made by Drain are not reported: Drain's caller knows them.
	OnChange func(key string)
	Log      *slog.Logger
	// Discover finds the gateway for a local address. Default:
	// Discoverer{Clock: Clock}.Discover with a 3 s timeout. Tests replace it.
	Discover func(ctx context.Context, local netip.Addr) (Client, error)
	// Retry backoff after a failure: RetryMin, doubling up to RetryMax.
	// Defaults 2 s and 2 min.
	RetryMin, RetryMax time.Duration
	// Clock schedules refreshes and retries. Default clock.Real{}.
	Clock clock.Clock
}

// State is what is in place for a key.
type State struct {
	// External is the gateway's external address while at least one
	// mapping of the key is in place.
	External netip.Addr
	// Mapped are the key's mappings in place, by protocol and external port.
	Mapped []Mapping
	// Err is the last failure (no gateway, a refused mapping, an invalid
	// mapping); nil once everything wanted is in place.
	Err error
}

// Manager keeps, per key (a Service), a desired set of mappings alive on the
// gateway found from that key's local address. Set and State never touch
// the network; Run and Drain do, one at a time.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	desired   map[string]*desired
	published map[string]State
	draining  map[string]bool // keys with mappings still to be deleted
	gen       uint64
	running   bool
	wake      chan struct{}

	// The holder of the turn (one step of Run, or a Drain) does the
	// network I/O and owns keys, orphans and gws.
	turn    *turn
	keys    map[string]*keyState
	orphans map[orphanKey]*orphan
	gws     map[netip.Addr]*gwState
}

type portKey struct {
	proto string
	ext   uint16
}

func keyOf(m Mapping) portKey { return portKey{m.Protocol, m.ExternalPort} }

type desired struct {
	local netip.Addr
	want  map[portKey]Mapping
	err   error  // invalid mappings that Set dropped
	gen   uint64 // changes with every Set that changed something
}

type record struct {
	m         Mapping
	refreshAt time.Time // zero: permanent, never refreshed
	expires   time.Time // zero: permanent
}

type keyState struct {
	gen      uint64
	local    netip.Addr // where mapped was made from
	mapped   map[portKey]record
	external netip.Addr
	err      error
	retryAt  time.Time
	backoff  time.Duration
}

// orphanKey names a mapping that is no longer wanted and is still to be
// deleted.
type orphanKey struct {
	local netip.Addr
	portKey
}

type orphan struct {
	key     string // whose mapping it was
	expires time.Time
	retryAt time.Time
	backoff time.Duration
}

type gwState struct {
	c       Client
	err     error
	retryAt time.Time
	backoff time.Duration
}

// NewManager returns a Manager; call Run to make it act.
func NewManager(cfg Config) *Manager {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Discover == nil {
		cfg.Discover = defaultDiscover(cfg.Clock)
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 2 * time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(2*time.Minute, cfg.RetryMin)
	}
	return &Manager{
		cfg:       cfg,
		log:       cfg.Log,
		desired:   map[string]*desired{},
		published: map[string]State{},
		wake:      make(chan struct{}, 1),
		turn:      newTurn(),
		keys:      map[string]*keyState{},
		orphans:   map[orphanKey]*orphan{},
		gws:       map[netip.Addr]*gwState{},
	}
}

func defaultDiscover(clk clock.Clock) func(ctx context.Context, local netip.Addr) (Client, error) {
	d := Discoverer{Clock: clk}
	return func(ctx context.Context, local netip.Addr) (Client, error) {
		ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
		defer cancel()
		g, err := d.Discover(ctx, local)
		if err != nil {
			return nil, err
		}
		return g, nil
	}
}

// Set makes want the desired mappings of key, made from local (the VIP:
// requests to the gateway come from it, and a gateway in secure mode maps
// only to the requester's address). nil or empty want deletes everything
// mapped for key. Protocols are "TCP" or "UDP" (any case); invalid or
// duplicate mappings are dropped and reported in State(key).Err. Set never
// blocks on the network.
func (m *Manager) Set(key string, local netip.Addr, want []Mapping) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(want) == 0 {
		if _, ok := m.desired[key]; ok {
			delete(m.desired, key)
			m.signal()
		}
		return
	}
	d := newDesired(local, want)
	if old, ok := m.desired[key]; ok && old.local == d.local && maps.Equal(old.want, d.want) && errString(old.err) == errString(d.err) {
		return
	}
	m.gen++
	d.gen = m.gen
	m.desired[key] = d
	m.signal()
}

// newDesired validates and normalizes want.
func newDesired(local netip.Addr, want []Mapping) *desired {
	d := &desired{local: local.Unmap(), want: map[portKey]Mapping{}}
	var errs []error
	if !d.local.IsValid() {
		errs = append(errs, errors.New("upnp: no local address to map from"))
	}
	for _, w := range want {
		n, err := normMapping(w)
		if err == nil {
			if _, dup := d.want[keyOf(n)]; dup {
				err = fmt.Errorf("upnp: %s port %d wanted twice", n.Protocol, n.ExternalPort)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d.want[keyOf(n)] = n
	}
	d.err = errors.Join(errs...)
	if !d.local.IsValid() {
		clear(d.want)
	}
	return d
}

// normMapping checks w and returns it with its protocol in upper case and
// its internal address unmapped.
func normMapping(w Mapping) (Mapping, error) {
	proto, err := normProtocol(w.Protocol)
	switch {
	case err != nil:
		return w, err
	case w.ExternalPort == 0 || !w.Internal.IsValid() || w.Internal.Port() == 0:
		return w, fmt.Errorf("upnp: mapping %s %d to %v: port 0 or no internal address", proto, w.ExternalPort, w.Internal)
	case w.Lease < 0:
		return w, fmt.Errorf("upnp: mapping %s %d: negative lease %v", proto, w.ExternalPort, w.Lease)
	}
	w.Protocol = proto
	w.Internal = netip.AddrPortFrom(w.Internal.Addr().Unmap(), w.Internal.Port())
	return w, nil
}

func (m *Manager) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Draining reports whether mappings key no longer wants are still to be
// deleted. Deletions go out from the local address they were made from, so
// a caller should keep that address until draining ends (OnChange says
// when), or give up after a while: they expire with their lease anyway.
func (m *Manager) Draining(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.draining[key]
}

// State reports what is in place for key.
func (m *Manager) State(key string) State {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.published[key]
	s.Mapped = slices.Clone(s.Mapped)
	return s
}

// Run does all network I/O until ctx ends: discovery (cached per local
// address, repeated after a failure), adds, refreshes at half the lease,
// deletions of mappings no longer wanted (also when a key's local address
// changes: the old ones first). Failures are retried with backoff.
//
// When ctx ends Run returns nil and deletes nothing: the mappings stay on
// the gateway (and in State) until their lease runs out, so that the next
// holder of a local address takes them over by mapping from it again. To
// delete them, call Drain, before or after Run ends.
func (m *Manager) Run(ctx context.Context) error {
	if err := m.start(); err != nil {
		return err
	}
	defer m.stop()
	t := m.cfg.Clock.NewTimer()
	defer t.Stop()
	for {
		next, whole := m.takeTurn(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if whole {
			m.wait(ctx, t, next)
		}
		// else Drain cut the step short: step again once it is done.
	}
}

func (m *Manager) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running {
		return errors.New("upnp: Manager.Run is already running")
	}
	m.running = true
	return nil
}

func (m *Manager) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running = false
}

// takeTurn runs one step once no Drain is at work or waiting, on a
// context that a Drain cancels. It reports when the next step is due and
// whether the step ran to its end.
func (m *Manager) takeTurn(ctx context.Context) (next time.Time, whole bool) {
	sctx, done, err := m.turn.forStep(ctx)
	if err != nil {
		return time.Time{}, false
	}
	defer done()
	next = m.step(sctx)
	return next, sctx.Err() == nil
}

// wait returns when next has come (never when it is zero), Set or Drain
// changed something, or ctx ends.
func (m *Manager) wait(ctx context.Context, t clock.Timer, next time.Time) {
	var tc <-chan time.Time
	if !next.IsZero() {
		t.Reset(next)
		tc = t.C()
	}
	select {
	case <-ctx.Done():
	case <-m.wake:
	case <-tc:
	}
	t.Stop()
}

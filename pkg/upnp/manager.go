package upnp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Timeouts of the Manager's network operations.
const (
	discoverTimeout = 3 * time.Second // one SSDP search
	requestTimeout  = 5 * time.Second // one SOAP request
	shutdownTimeout = 5 * time.Second // all deletions when Run ends
)

// Config configures a Manager. The zero value works.
type Config struct {
	// OnChange is called (from Run's goroutine) after State(key) changed.
	// It must not block; typically it enqueues key.
	OnChange func(key string)
	Log      *slog.Logger
	// Discover finds the gateway for a local address. Default: Discover
	// with a 3 s timeout. Tests replace it.
	Discover func(ctx context.Context, local netip.Addr) (Client, error)
	// Retry backoff after a failure: RetryMin, doubling up to RetryMax.
	// Defaults 2 s and 2 min.
	RetryMin, RetryMax time.Duration

	now func() time.Time // test seam; default time.Now
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
// the network; Run does all of it on one goroutine.
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

	// Owned by Run's goroutine.
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
	if cfg.Discover == nil {
		cfg.Discover = func(ctx context.Context, local netip.Addr) (Client, error) {
			ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
			defer cancel()
			g, err := Discover(ctx, local)
			if err != nil {
				return nil, err
			}
			return g, nil
		}
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 2 * time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(2*time.Minute, cfg.RetryMin)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	return &Manager{
		cfg:       cfg,
		log:       cfg.Log,
		desired:   map[string]*desired{},
		published: map[string]State{},
		wake:      make(chan struct{}, 1),
		keys:      map[string]*keyState{},
		orphans:   map[orphanKey]*orphan{},
		gws:       map[netip.Addr]*gwState{},
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
	d := &desired{local: local.Unmap(), want: map[portKey]Mapping{}}
	var errs []error
	if !d.local.IsValid() {
		errs = append(errs, errors.New("upnp: no local address to map from"))
	}
	for _, w := range want {
		proto, err := normProtocol(w.Protocol)
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case w.ExternalPort == 0 || !w.Internal.IsValid() || w.Internal.Port() == 0:
			errs = append(errs, fmt.Errorf("upnp: mapping %s %d to %v: port 0 or no internal address", proto, w.ExternalPort, w.Internal))
			continue
		case w.Lease < 0:
			errs = append(errs, fmt.Errorf("upnp: mapping %s %d: negative lease %v", proto, w.ExternalPort, w.Lease))
			continue
		}
		w.Protocol = proto
		w.Internal = netip.AddrPortFrom(w.Internal.Addr().Unmap(), w.Internal.Port())
		if _, dup := d.want[keyOf(w)]; dup {
			errs = append(errs, fmt.Errorf("upnp: %s port %d wanted twice", proto, w.ExternalPort))
			continue
		}
		d.want[keyOf(w)] = w
	}
	d.err = errors.Join(errs...)
	if !d.local.IsValid() {
		clear(d.want)
	}
	if old, ok := m.desired[key]; ok && old.local == d.local && maps.Equal(old.want, d.want) && errString(old.err) == errString(d.err) {
		return
	}
	m.gen++
	d.gen = m.gen
	m.desired[key] = d
	m.signal()
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
// changes: the old ones first). Failures are retried with backoff. When
// ctx ends it deletes every mapping it made (best effort, within 5 s),
// clears every State without calling OnChange, and returns nil, or an error
// naming the mappings it could not delete.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return errors.New("upnp: Manager.Run is already running")
	}
	m.running = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
	}()

	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		next := m.step(ctx)
		if ctx.Err() != nil {
			return m.shutdown()
		}
		var tc <-chan time.Time
		if !next.IsZero() {
			t.Reset(max(next.Sub(m.cfg.now()), 0))
			tc = t.C
		}
		select {
		case <-ctx.Done():
			return m.shutdown()
		case <-m.wake:
		case <-tc:
		}
		t.Stop()
	}
}

// step makes one pass over everything: it moves mappings that are no
// longer wanted to the orphans, deletes due orphans, adds and refreshes due
// mappings, publishes States (calling OnChange) and returns when it next
// has something to do (zero: nothing until Set).
func (m *Manager) step(ctx context.Context) time.Time {
	m.mu.Lock()
	des := maps.Clone(m.desired)
	m.mu.Unlock()

	// Mappings no longer wanted (key gone, port gone, internal address or
	// local address changed) become orphans, to be deleted first. Mappings
	// whose lease ran out (renewals failed) are gone from the gateway.
	now := m.cfg.now()
	for key, ks := range m.keys {
		d := des[key]
		for pk, r := range ks.mapped {
			if !r.expires.IsZero() && !now.Before(r.expires) {
				delete(ks.mapped, pk)
				continue
			}
			var w Mapping
			ok := d != nil && d.local == ks.local
			if ok {
				w, ok = d.want[pk]
			}
			if !ok || w.Internal != r.m.Internal {
				m.orphans[orphanKey{ks.local, pk}] = &orphan{key: key, expires: r.expires}
				delete(ks.mapped, pk)
			}
		}
		if d == nil && len(ks.mapped) == 0 {
			delete(m.keys, key)
		}
	}
	for key, d := range des {
		ks := m.keys[key]
		if ks == nil {
			ks = &keyState{mapped: map[portKey]record{}}
			m.keys[key] = ks
		}
		if ks.gen != d.gen {
			ks.gen, ks.retryAt, ks.backoff = d.gen, time.Time{}, 0
		}
		if ks.local != d.local && len(ks.mapped) == 0 {
			ks.local, ks.external = d.local, netip.Addr{}
		}
	}

	m.deleteOrphans(ctx, des, now)
	if ctx.Err() != nil {
		return time.Time{}
	}
	for _, key := range slices.Sorted(maps.Keys(des)) {
		m.syncKey(ctx, key, m.keys[key], des[key])
		if ctx.Err() != nil {
			return time.Time{}
		}
	}
	m.forgetUnusedGateways()
	m.publish(des, true)
	return m.next(des)
}

// deleteOrphans deletes the orphans that are due. An orphan that a key
// wants again (same local address, protocol and port) is dropped: that
// key's Add takes the mapping over. One whose lease ran out is gone anyway.
func (m *Manager) deleteOrphans(ctx context.Context, des map[string]*desired, now time.Time) {
	for _, ok := range slices.SortedFunc(maps.Keys(m.orphans), cmpOrphanKey) {
		o := m.orphans[ok]
		if claimed(des, ok) || (!o.expires.IsZero() && !now.Before(o.expires)) {
			delete(m.orphans, ok)
			continue
		}
		if now.Before(o.retryAt) {
			continue
		}
		err := m.delete(ctx, ok)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			o.backoff = m.backoff(o.backoff)
			o.retryAt = m.cfg.now().Add(o.backoff)
			if gw := m.gws[ok.local]; gw != nil && gw.c == nil && gw.retryAt.After(o.retryAt) {
				o.retryAt = gw.retryAt
			}
			m.log.Warn("UPnP delete failed; will retry", "local", ok.local, "protocol", ok.proto, "port", ok.ext, "retryIn", o.retryAt.Sub(m.cfg.now()), "err", err)
			continue
		}
		delete(m.orphans, ok)
		m.log.Info("UPnP mapping deleted", "local", ok.local, "protocol", ok.proto, "port", ok.ext)
	}
}

func (m *Manager) delete(ctx context.Context, ok orphanKey) error {
	gw, err := m.gateway(ctx, ok.local)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	err = gw.Delete(rctx, ok.proto, ok.ext)
	m.check(ctx, ok.local, err)
	return err
}

func claimed(des map[string]*desired, ok orphanKey) bool {
	for _, d := range des {
		if _, want := d.want[ok.portKey]; want && d.local == ok.local {
			return true
		}
	}
	return false
}

func cmpOrphanKey(a, b orphanKey) int {
	return cmp.Or(a.local.Compare(b.local), cmp.Compare(a.proto, b.proto), cmp.Compare(a.ext, b.ext))
}

func cmpMapping(a, b Mapping) int {
	return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.ExternalPort, b.ExternalPort))
}

// syncKey adds the key's wanted mappings that are missing (once its retry
// time has come), renews those due for refresh, and reads the gateway's
// external address after any add.
func (m *Manager) syncKey(ctx context.Context, key string, ks *keyState, d *desired) {
	now := m.cfg.now()
	retryDue := !now.Before(ks.retryAt)
	var todo []Mapping
	for pk, w := range d.want {
		r, ok := ks.mapped[pk]
		switch {
		case !ok || r.m != w:
			if retryDue {
				todo = append(todo, w)
			}
		case !r.refreshAt.IsZero() && !now.Before(r.refreshAt):
			todo = append(todo, w)
		}
	}
	needIP := len(ks.mapped) > 0 && !ks.external.IsValid() && retryDue
	if len(todo) == 0 && !needIP {
		if retryDue && len(ks.mapped) == len(d.want) {
			ks.err, ks.backoff, ks.retryAt = nil, 0, time.Time{}
		}
		return
	}
	slices.SortFunc(todo, cmpMapping)

	gw, err := m.gateway(ctx, d.local)
	if err != nil {
		if ctx.Err() == nil {
			ks.err = err
			ks.retryAt = m.gws[d.local].retryAt
			postponeRefresh(ks, now)
		}
		return
	}
	var errs []error
	added := false
	for _, w := range todo {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		t := m.cfg.now()
		err := gw.Add(rctx, w)
		cancel()
		if ctx.Err() != nil {
			return
		}
		m.check(ctx, d.local, err)
		if err != nil {
			errs = append(errs, err)
			if !isRefusal(err) {
				break // the gateway is unreachable or broken: rediscover first
			}
			continue
		}
		r := record{m: w}
		if w.Lease > 0 {
			r.refreshAt, r.expires = t.Add(w.Lease/2), t.Add(w.Lease)
		}
		if old, ok := ks.mapped[keyOf(w)]; ok && old.m == w {
			m.log.Debug("UPnP mapping renewed", "key", key, "protocol", w.Protocol, "port", w.ExternalPort, "internal", w.Internal)
		} else {
			m.log.Info("UPnP mapping added", "key", key, "protocol", w.Protocol, "port", w.ExternalPort, "internal", w.Internal, "lease", w.Lease)
		}
		ks.mapped[keyOf(w)] = r
		added = true
	}
	if (added || needIP) && len(ks.mapped) > 0 && (len(errs) == 0 || isRefusal(errs[len(errs)-1])) {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		ip, err := gw.ExternalIP(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		m.check(ctx, d.local, err)
		if err != nil {
			errs = append(errs, err)
		} else {
			ks.external = ip
		}
	}
	if err := errors.Join(errs...); err != nil {
		if errString(err) != errString(ks.err) {
			m.log.Warn("UPnP mapping failed", "key", key, "local", d.local, "err", err)
		}
		ks.err = err
		ks.backoff = m.backoff(ks.backoff)
		ks.retryAt = m.cfg.now().Add(ks.backoff)
		if gw := m.gws[d.local]; gw != nil && gw.c == nil && gw.retryAt.After(ks.retryAt) {
			ks.retryAt = gw.retryAt
		}
		postponeRefresh(ks, now)
		return
	}
	if len(ks.mapped) == len(d.want) {
		ks.err, ks.backoff, ks.retryAt = nil, 0, time.Time{}
	}
}

// postponeRefresh moves refreshes that were due at now and failed to the
// key's retry time.
func postponeRefresh(ks *keyState, now time.Time) {
	for pk, r := range ks.mapped {
		if !r.refreshAt.IsZero() && !now.Before(r.refreshAt) {
			r.refreshAt = ks.retryAt
			ks.mapped[pk] = r
		}
	}
}

// isRefusal reports whether err is the gateway's answer (a UPnP error), as
// opposed to a failure to reach or understand it.
func isRefusal(err error) bool {
	var ue *Error
	return errors.As(err, &ue)
}

// gateway returns the cached gateway for local, discovering it when there
// is none and its retry time has come.
func (m *Manager) gateway(ctx context.Context, local netip.Addr) (Client, error) {
	gw := m.gws[local]
	if gw == nil {
		gw = &gwState{}
		m.gws[local] = gw
	}
	if gw.c != nil {
		return gw.c, nil
	}
	if m.cfg.now().Before(gw.retryAt) {
		return nil, gw.err
	}
	c, err := m.cfg.Discover(ctx, local)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("upnp: discover from %s: %w", local, ctx.Err())
	}
	if err == nil && c == nil {
		err = fmt.Errorf("upnp: discover from %s found nothing", local)
	}
	if err != nil {
		if errString(err) != errString(gw.err) {
			m.log.Warn("UPnP gateway discovery failed", "local", local, "err", err)
		}
		gw.err = err
		gw.backoff = m.backoff(gw.backoff)
		gw.retryAt = m.cfg.now().Add(gw.backoff)
		return nil, err
	}
	if u, ok := c.(interface{ URL() string }); ok {
		m.log.Info("UPnP gateway found", "local", local, "url", u.URL())
	}
	*gw = gwState{c: c}
	return c, nil
}

// check forgets local's gateway after an error that is not a UPnP error: the
// gateway may be gone or have moved, so the next attempt discovers again.
func (m *Manager) check(ctx context.Context, local netip.Addr, err error) {
	if err == nil || isRefusal(err) || ctx.Err() != nil {
		return
	}
	if gw := m.gws[local]; gw != nil && gw.c != nil {
		gw.c, gw.err, gw.retryAt = nil, err, time.Time{}
	}
}

func (m *Manager) forgetUnusedGateways() {
	for local := range m.gws {
		used := false
		for _, ks := range m.keys {
			used = used || ks.local == local
		}
		for ok := range m.orphans {
			used = used || ok.local == local
		}
		if !used {
			delete(m.gws, local)
		}
	}
}

func (m *Manager) backoff(prev time.Duration) time.Duration {
	return min(max(2*prev, m.cfg.RetryMin), m.cfg.RetryMax)
}

// next is the earliest time something is due.
func (m *Manager) next(des map[string]*desired) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for key, ks := range m.keys {
		for _, r := range ks.mapped {
			consider(r.refreshAt)
		}
		if d := des[key]; d != nil && (ks.err != nil || len(ks.mapped) != len(d.want)) {
			consider(ks.retryAt)
		}
	}
	for _, o := range m.orphans {
		consider(o.retryAt)
	}
	return next
}

// publish computes every key's State, stores those that changed and, when
// notify is set, calls OnChange for them.
func (m *Manager) publish(des map[string]*desired, notify bool) {
	states := map[string]State{}
	for key, ks := range m.keys {
		var s State
		d := des[key]
		if d != nil {
			s.Err = errors.Join(d.err, ks.err)
		}
		for _, r := range ks.mapped {
			s.Mapped = append(s.Mapped, r.m)
		}
		slices.SortFunc(s.Mapped, cmpMapping)
		if len(s.Mapped) > 0 {
			s.External = ks.external
		}
		if d != nil || len(s.Mapped) > 0 {
			states[key] = s
		}
	}
	draining := map[string]bool{}
	for _, o := range m.orphans {
		draining[o.key] = true
	}
	var changed []string
	m.mu.Lock()
	for key := range maps.Keys(draining) {
		if !m.draining[key] {
			changed = append(changed, key)
		}
	}
	for key := range maps.Keys(m.draining) {
		if !draining[key] {
			changed = append(changed, key)
		}
	}
	m.draining = draining
	for key, s := range states {
		if old, ok := m.published[key]; !ok || !sameState(old, s) {
			m.published[key] = s
			changed = append(changed, key)
		}
	}
	for key := range m.published {
		if _, ok := states[key]; !ok {
			delete(m.published, key)
			changed = append(changed, key)
		}
	}
	m.mu.Unlock()
	if !notify || m.cfg.OnChange == nil {
		return
	}
	slices.Sort(changed)
	for _, key := range slices.Compact(changed) {
		m.cfg.OnChange(key)
	}
}

func sameState(a, b State) bool {
	return a.External == b.External && slices.Equal(a.Mapped, b.Mapped) && errString(a.Err) == errString(b.Err)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// shutdown deletes every mapping the Manager made, on a fresh context with
// a short timeout, and clears all States.
func (m *Manager) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, ks := range m.keys {
		for pk, r := range ks.mapped {
			m.orphans[orphanKey{ks.local, pk}] = &orphan{expires: r.expires}
		}
	}
	clear(m.keys)
	for _, gw := range m.gws {
		gw.retryAt = time.Time{} // one more discovery, whatever the backoff
	}
	now := m.cfg.now()
	var errs []error
	for _, ok := range slices.SortedFunc(maps.Keys(m.orphans), cmpOrphanKey) {
		if o := m.orphans[ok]; !o.expires.IsZero() && !now.Before(o.expires) {
			continue
		}
		if err := m.delete(ctx, ok); err != nil {
			errs = append(errs, err)
			continue
		}
		m.log.Info("UPnP mapping deleted", "local", ok.local, "protocol", ok.proto, "port", ok.ext)
	}
	clear(m.orphans)
	clear(m.gws)
	m.publish(nil, false)
	if len(errs) > 0 {
		return fmt.Errorf("upnp: mappings left on the gateway: %w", errors.Join(errs...))
	}
	return nil
}

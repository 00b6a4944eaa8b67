package dnsname

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// Lookup resolves a host name (net.Resolver.LookupNetIP with network "ip").
type Lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)

// Mode says which addresses of a name are used (kube-vip's dns_mode).
type Mode string

// The modes.
const (
	First Mode = "first"
	IPv4  Mode = "ipv4"
	IPv6  Mode = "ipv6"
	Dual  Mode = "dual"
)

// ParseMode reads a dns_mode value ("" is first).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return First, nil
	case First, IPv4, IPv6, Dual:
		return m, nil
	}
	return "", fmt.Errorf("dns_mode %q: want first, ipv4, ipv6 or dual", s)
}

// Pick returns the addresses of a lookup result that mode uses, sorted.
func (m Mode) Pick(all []netip.Addr) []netip.Addr {
	var out []netip.Addr
	var v4, v6 bool
	for _, a := range all {
		a = a.Unmap()
		switch {
		case m == First && len(out) == 0,
			a.Is4() && !v4 && (m == IPv4 || m == Dual),
			a.Is6() && !v6 && (m == IPv6 || m == Dual):
			out = append(out, a)
			v4, v6 = v4 || a.Is4(), v6 || a.Is6()
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// Config configures a Resolver.
type Config struct {
	Lookup   Lookup
	Mode     Mode
	Interval time.Duration     // how often every name is resolved again (default 30 s)
	OnChange func(name string) // a name's addresses changed; must only enqueue
	Clock    clock.Clock       // nil: the real clock
	Log      *slog.Logger
}

// Resolver keeps the addresses of the names asked for.
type Resolver struct {
	cfg   Config
	wake  chan struct{}
	mu    sync.Mutex
	names map[string][]netip.Addr // nil slice: not resolved yet
}

// New returns a Resolver; Run resolves.
func New(cfg Config) *Resolver {
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Resolver{cfg: cfg, wake: make(chan struct{}, 1), names: map[string][]netip.Addr{}}
}

// Addrs returns name's addresses as last resolved (ok false: not yet, or
// it resolved to nothing usable). A name not seen before is resolved at
// once by Run, which then calls OnChange.
func (r *Resolver) Addrs(name string) ([]netip.Addr, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, known := r.names[name]
	if !known {
		r.names[name] = nil
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return a, len(a) > 0
}

// Run resolves new names at once and every name every Interval, until ctx
// ends.
func (r *Resolver) Run(ctx context.Context) error {
	t := r.cfg.Clock.NewTimer()
	defer t.Stop()
	for {
		t.Reset(r.cfg.Clock.Now().Add(r.cfg.Interval))
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
			r.resolve(ctx, true)
		case <-t.C():
			r.resolve(ctx, false)
		}
	}
}

// resolve looks the names up again (onlyNew: those never resolved) and
// reports the ones that changed. A failed lookup keeps the last addresses.
func (r *Resolver) resolve(ctx context.Context, onlyNew bool) {
	r.mu.Lock()
	var names []string
	for n, a := range r.names {
		if !onlyNew || a == nil {
			names = append(names, n)
		}
	}
	r.mu.Unlock()
	slices.Sort(names)
	for _, n := range names {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		all, err := r.cfg.Lookup(lctx, "ip", n)
		cancel()
		if err != nil {
			r.cfg.Log.Warn("cannot resolve a Service's host name; keeping its last addresses", "name", n, "err", err)
			continue
		}
		r.set(n, r.cfg.Mode.Pick(all))
	}
}

func (r *Resolver) set(name string, addrs []netip.Addr) {
	if addrs == nil {
		addrs = []netip.Addr{} // resolved, to nothing usable
	}
	r.mu.Lock()
	old := r.names[name]
	r.names[name] = addrs
	r.mu.Unlock()
	if !slices.Equal(old, addrs) {
		r.cfg.Log.Info("Service host name resolved", "name", name, "addrs", addrs)
		if r.cfg.OnChange != nil {
			r.cfg.OnChange(name)
		}
	}
}

package routed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/vigil-lb/vigil/internal/journal"
	"github.com/vigil-lb/vigil/pkg/bgpspec"
)

// Speaker advertises routes to the node's peers (pkg/bgp).
type Speaker interface {
	Announce(ctx context.Context, r bgpspec.Route) error
	Withdraw(ctx context.Context, p netip.Prefix) error
}

// Guard keeps exactly the given addresses from being answered by ARP
// (pkg/arpguard).
type Guard interface {
	Set(addrs []netip.Addr) error
}

// Local binds host addresses on the node (netif on lo).
type Local interface {
	Put(a netip.Addr) error
	Unbind(a netip.Addr) (bool, error)
}

// Config is the dataplane's own configuration.
type Config struct {
	// Journal records the addresses bound on lo ("" = none).
	Journal string
	// Peers counts the established sessions (nil: 0).
	Peers func() int
	// Routes gives the routes that carry an address from a pool: its host
	// prefix or an aggregate holding it, with communities, local
	// preference and peers (one per advertisement); nil: HostRoutes.
	Routes func(addr netip.Addr, pool string) []bgpspec.Route
	Log    *slog.Logger
}

// Dataplane advertises addresses and makes them local to the node. With a
// nil Local and Guard it only advertises (the address is made local some
// other way, e.g. by the L2 holder or kube-proxy). An aggregate prefix is
// advertised while any address it carries is.
type Dataplane struct {
	cfg   Config
	sp    Speaker
	guard Guard
	local Local

	mu    sync.Mutex
	adv   map[netip.Addr][]netip.Prefix // address → the prefixes carrying it
	users map[netip.Prefix]int          // prefix → addresses it carries
}

// New returns a dataplane over a speaker, an ARP guard and lo.
func New(cfg Config, sp Speaker, guard Guard, local Local) *Dataplane {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Routes == nil {
		cfg.Routes = HostRoutes
	}
	return &Dataplane{cfg: cfg, sp: sp, guard: guard, local: local,
		adv: map[netip.Addr][]netip.Prefix{}, users: map[netip.Prefix]int{}}
}

// HostRoutes is a /32 or /128 for a with next hop self.
func HostRoutes(a netip.Addr, _ string) []bgpspec.Route {
	return []bgpspec.Route{{Prefix: netip.PrefixFrom(a, a.BitLen())}}
}

// Advertise hides a from ARP, binds it on lo, then advertises the routes
// of its pool (idempotent; routes a changed configuration no longer gives
// are withdrawn).
func (d *Dataplane) Advertise(ctx context.Context, a netip.Addr, pool string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.adv[a]; !ok {
		d.adv[a] = nil
		if err := d.makeLocal(a); err != nil {
			delete(d.adv, a)
			return err
		}
	}
	routes := d.cfg.Routes(a, pool)
	var errs []error
	var now []netip.Prefix
	for _, r := range routes {
		if err := d.sp.Announce(ctx, r); err != nil {
			errs = append(errs, err)
			continue
		}
		now = append(now, r.Prefix)
	}
	errs = append(errs, d.setPrefixes(ctx, a, now))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("advertise %s: %w", a, err)
	}
	return nil
}

// Withdraw withdraws a's routes (an aggregate only once it carries no other
// address), then unbinds a from lo and stops hiding it (idempotent).
func (d *Dataplane) Withdraw(ctx context.Context, a netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.adv[a]; !ok {
		// Not ours (or a previous run's): its host route must not stay.
		if err := d.sp.Withdraw(ctx, netip.PrefixFrom(a, a.BitLen())); err != nil {
			return fmt.Errorf("withdraw %s: %w", a, err)
		}
		return nil
	}
	if err := d.setPrefixes(ctx, a, nil); err != nil {
		return fmt.Errorf("withdraw %s: %w", a, err)
	}
	delete(d.adv, a)
	return d.unmakeLocal(a)
}

// setPrefixes records that a is carried by exactly now, withdrawing every
// prefix that carries no address any more; mu must be held.
func (d *Dataplane) setPrefixes(ctx context.Context, a netip.Addr, now []netip.Prefix) error {
	old := d.adv[a]
	for _, p := range now {
		if !slices.Contains(old, p) {
			d.users[p]++
		}
	}
	d.adv[a] = now
	var errs []error
	for _, p := range old {
		if slices.Contains(now, p) {
			continue
		}
		if d.users[p]--; d.users[p] > 0 {
			continue
		}
		delete(d.users, p)
		if err := d.sp.Withdraw(ctx, p); err != nil {
			d.users[p] = 0 // still announced: withdrawn by the next change
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Check reads the ARP guard back and repairs what someone else changed
// (the guard trusts its own writes between checks); the owner calls it now
// and then.
func (d *Dataplane) Check() error {
	if d.local == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.guard.Set(d.sortedLocked()); err != nil {
		return fmt.Errorf("check the ARP guard: %w", err)
	}
	return nil
}

// Peers counts the node's established BGP sessions.
func (d *Dataplane) Peers() int {
	if d.cfg.Peers == nil {
		return 0
	}
	return d.cfg.Peers()
}

// Advertised lists the addresses advertised, sorted.
func (d *Dataplane) Advertised() []netip.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sortedLocked()
}

func (d *Dataplane) sortedLocked() []netip.Addr {
	out := make([]netip.Addr, 0, len(d.adv))
	for a := range d.adv {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// makeLocal journals a, hides it from ARP and binds it; mu must be held.
func (d *Dataplane) makeLocal(a netip.Addr) error {
	if d.local == nil {
		return nil
	}
	all := d.sortedLocked()
	if err := journal.Save(d.cfg.Journal, all); err != nil {
		d.cfg.Log.Warn("cannot write the routed journal", "err", err)
	}
	if err := d.guard.Set(all); err != nil {
		return fmt.Errorf("hide %s from ARP: %w", a, err)
	}
	if err := d.local.Put(a); err != nil {
		return fmt.Errorf("bind %s on lo: %w", a, err)
	}
	return nil
}

// unmakeLocal unbinds a, stops hiding it and journals; mu must be held.
func (d *Dataplane) unmakeLocal(a netip.Addr) error {
	if d.local == nil {
		return nil
	}
	_, err := d.local.Unbind(a)
	all := d.sortedLocked()
	errs := []error{err, d.guard.Set(all)}
	if err := journal.Save(d.cfg.Journal, all); err != nil {
		d.cfg.Log.Warn("cannot write the routed journal", "err", err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unbind %s from lo: %w", a, err)
	}
	return nil
}

// Recover unbinds every address a previous run left on lo (from the
// journal) and resets the ARP guard to nothing advertised.
func (d *Dataplane) Recover() ([]netip.Addr, error) {
	if d.local == nil {
		return nil, nil
	}
	left, err := journal.Load[netip.Addr](d.cfg.Journal)
	if err != nil && !errors.Is(err, journal.ErrUnreadable) {
		return nil, fmt.Errorf("read the routed journal: %w", err)
	}
	var removed []netip.Addr
	var errs []error
	for _, a := range left {
		ok, err := d.local.Unbind(a)
		errs = append(errs, err)
		if ok {
			removed = append(removed, a)
		}
	}
	errs = append(errs, d.guard.Set(nil), journal.Save[netip.Addr](d.cfg.Journal, nil))
	return removed, errors.Join(errs...)
}

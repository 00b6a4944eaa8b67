package upnp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// step makes one pass over everything: it moves mappings that are no
// longer wanted to the orphans, deletes due orphans, adds and refreshes due
// mappings, publishes States (calling OnChange) and returns when it next
// has something to do (zero: nothing until Set). The caller holds the turn.
func (m *Manager) step(ctx context.Context) time.Time {
	des := m.snapshot()
	now := m.cfg.Clock.Now()
	m.orphanUnwanted(des, now)
	m.trackKeys(des)
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

func (m *Manager) snapshot() map[string]*desired {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.desired)
}

// orphanUnwanted makes orphans, to be deleted first, of the mappings no
// longer wanted (key gone, port gone, internal or local address changed),
// and forgets those whose lease ran out (renewals failed): they are gone
// from the gateway.
func (m *Manager) orphanUnwanted(des map[string]*desired, now time.Time) {
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
}

// trackKeys gives every wanted key a state, resets its backoff when Set
// changed it, and moves it to its new local address once nothing is mapped
// from the old one.
func (m *Manager) trackKeys(des map[string]*desired) {
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
}

func cmpMapping(a, b Mapping) int {
	return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.ExternalPort, b.ExternalPort))
}

// syncKey adds the key's wanted mappings that are missing (once its retry
// time has come), renews those due for refresh, and reads the gateway's
// external address after any add. ks.local is d.local here: trackKeys saw
// to it.
func (m *Manager) syncKey(ctx context.Context, key string, ks *keyState, d *desired) {
	now := m.cfg.Clock.Now()
	todo, needIP := dueWork(ks, d, now)
	if len(todo) == 0 && !needIP {
		if !now.Before(ks.retryAt) && len(ks.mapped) == len(d.want) {
			ks.err, ks.backoff, ks.retryAt = nil, 0, time.Time{}
		}
		return
	}
	gw, err := m.gateway(ctx, d.local)
	if err != nil {
		if ctx.Err() == nil {
			ks.err, ks.retryAt = err, m.gws[d.local].retryAt
			postponeRefresh(ks, now)
		}
		return
	}
	errs, added := m.addMappings(ctx, key, ks, gw, todo)
	if ctx.Err() != nil {
		return
	}
	if (added || needIP) && len(ks.mapped) > 0 && (len(errs) == 0 || isRefusal(errs[len(errs)-1])) {
		if err := m.readExternal(ctx, ks, gw); err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			return
		}
	}
	m.settle(key, ks, d, errors.Join(errs...), now)
}

// dueWork returns, sorted, the key's wanted mappings to send now (missing
// or changed ones once the retry time has come, and those due for
// refresh), and whether the gateway's external address is still to be read.
func dueWork(ks *keyState, d *desired, now time.Time) (todo []Mapping, needIP bool) {
	retryDue := !now.Before(ks.retryAt)
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
	slices.SortFunc(todo, cmpMapping)
	return todo, len(ks.mapped) > 0 && !ks.external.IsValid() && retryDue
}

// addMappings sends todo in order and records what the gateway accepted.
// It stops at the first error that is not a refusal (the gateway is
// unreachable or broken: rediscover first), or when ctx ends.
func (m *Manager) addMappings(ctx context.Context, key string, ks *keyState, gw Client, todo []Mapping) (errs []error, added bool) {
	for _, w := range todo {
		sent := m.cfg.Clock.Now()
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := gw.Add(rctx, w)
		cancel()
		if err == nil {
			m.recordAdd(key, ks, w, sent)
			added = true
			continue
		}
		if ctx.Err() != nil {
			m.addInDoubt(key, ks, w, sent)
			return errs, added
		}
		m.check(ctx, ks.local, err)
		errs = append(errs, err)
		if !isRefusal(err) {
			break
		}
	}
	return errs, added
}

func (m *Manager) recordAdd(key string, ks *keyState, w Mapping, sent time.Time) {
	r := record{m: w}
	if w.Lease > 0 {
		r.refreshAt, r.expires = sent.Add(w.Lease/2), sent.Add(w.Lease)
	}
	if old, ok := ks.mapped[keyOf(w)]; ok && old.m == w {
		m.log.Debug("UPnP mapping renewed", "key", key, "protocol", w.Protocol, "port", w.ExternalPort, "internal", w.Internal)
	} else {
		m.log.Info("UPnP mapping added", "key", key, "protocol", w.Protocol, "port", w.ExternalPort, "internal", w.Internal, "lease", w.Lease)
	}
	ks.mapped[keyOf(w)] = r
}

// addInDoubt notes an add that ctx cut short: the gateway may have made
// the mapping. Unless the key already has it, it becomes an orphan, so
// that whoever deletes the key's mappings (a later step, or Drain) deletes
// it too; a key that still wants it takes it over instead.
func (m *Manager) addInDoubt(key string, ks *keyState, w Mapping, sent time.Time) {
	if _, ok := ks.mapped[keyOf(w)]; ok {
		return
	}
	o := &orphan{key: key}
	if w.Lease > 0 {
		o.expires = sent.Add(w.Lease)
	}
	m.orphans[orphanKey{ks.local, keyOf(w)}] = o
}

// readExternal asks the gateway for its external address.
func (m *Manager) readExternal(ctx context.Context, ks *keyState, gw Client) error {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	ip, err := gw.ExternalIP(rctx)
	cancel()
	m.check(ctx, ks.local, err)
	if err == nil {
		ks.external = ip
	}
	return err
}

// settle records how a key's sync went: a failure is retried with backoff
// (and so are the refreshes that were due); success clears the error once
// everything wanted is in place.
func (m *Manager) settle(key string, ks *keyState, d *desired, err error, now time.Time) {
	if err == nil {
		if len(ks.mapped) == len(d.want) {
			ks.err, ks.backoff, ks.retryAt = nil, 0, time.Time{}
		}
		return
	}
	if errString(err) != errString(ks.err) {
		m.log.Warn("UPnP mapping failed", "key", key, "local", d.local, "err", err)
	}
	ks.err = err
	ks.backoff = m.backoff(ks.backoff)
	ks.retryAt = m.retryTime(d.local, ks.backoff)
	postponeRefresh(ks, now)
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
	if m.cfg.Clock.Now().Before(gw.retryAt) {
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
		gw.retryAt = m.cfg.Clock.Now().Add(gw.backoff)
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

// retryTime is when to try again after a failure with local's gateway:
// after backoff, or when its discovery may be retried if that is later.
func (m *Manager) retryTime(local netip.Addr, backoff time.Duration) time.Time {
	at := m.cfg.Clock.Now().Add(backoff)
	if gw := m.gws[local]; gw != nil && gw.c == nil && gw.retryAt.After(at) {
		return gw.retryAt
	}
	return at
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

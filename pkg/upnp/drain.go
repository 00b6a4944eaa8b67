package upnp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Drain deletes the mappings of keys and forgets the keys, as
// Set(key, local, nil) does, but on the caller's goroutine: it returns once
// every delete has been answered, or when ctx ends. Each delete goes out
// from the local address its mapping was made from, so call Drain while
// that address is still up. It works whether Run is running or not (before
// it starts or after it ended): a step of Run that is under way is cut
// short and made again after Drain. Mappings it could not delete are named
// in the error; while Run runs it retries them until their lease runs out,
// and Draining reports them. A mapping that another key wants from the
// same address is left to that key. Drain does not call OnChange. When
// ctx ends before Drain gets its turn the keys are forgotten all the same:
// Run deletes their mappings as after Set(key, local, nil).
func (m *Manager) Drain(ctx context.Context, keys ...string) error {
	m.forget(keys)
	done, err := m.turn.forDrain(ctx)
	if err != nil {
		return fmt.Errorf("upnp: drain %s: %w", strings.Join(keys, ", "), err)
	}
	defer done()
	defer m.signal() // Run: what is due has changed
	des := m.snapshot()
	now := m.cfg.Clock.Now()
	targets := m.orphanKeys(keys)
	m.dropSettledOrphans(des, now)
	var errs []error
	rediscovered := map[netip.Addr]bool{}
	for _, ok := range targets {
		if _, left := m.orphans[ok]; !left {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("upnp: delete %s %d from %s: %w", ok.proto, ok.ext, ok.local, err))
			continue
		}
		if !rediscovered[ok.local] {
			rediscovered[ok.local] = true
			m.retryDiscovery(ok.local)
		}
		if err := m.deleteOrphan(ctx, ok); err != nil {
			errs = append(errs, err)
		}
	}
	m.publish(des, false)
	if len(errs) > 0 {
		return fmt.Errorf("upnp: drain %s: mappings left on the gateway: %w", strings.Join(keys, ", "), errors.Join(errs...))
	}
	return nil
}

// forget drops keys from the desired mappings.
func (m *Manager) forget(keys []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, key := range keys {
		delete(m.desired, key)
	}
	m.signal()
}

// orphanKeys makes orphans of everything mapped for keys and returns, in
// order, every orphan of keys.
func (m *Manager) orphanKeys(keys []string) []orphanKey {
	for _, key := range keys {
		ks := m.keys[key]
		if ks == nil {
			continue
		}
		for pk, r := range ks.mapped {
			m.orphans[orphanKey{ks.local, pk}] = &orphan{key: key, expires: r.expires}
		}
		delete(m.keys, key)
	}
	var out []orphanKey
	for ok, o := range m.orphans {
		if slices.Contains(keys, o.key) {
			out = append(out, ok)
		}
	}
	slices.SortFunc(out, cmpOrphanKey)
	return out
}

// retryDiscovery lets local's gateway be discovered once more, whatever
// its backoff: Drain is the last chance to delete.
func (m *Manager) retryDiscovery(local netip.Addr) {
	if gw := m.gws[local]; gw != nil && gw.c == nil {
		gw.retryAt = time.Time{}
	}
}

// deleteOrphans deletes the orphans that are due.
func (m *Manager) deleteOrphans(ctx context.Context, des map[string]*desired, now time.Time) {
	m.dropSettledOrphans(des, now)
	for _, ok := range slices.SortedFunc(maps.Keys(m.orphans), cmpOrphanKey) {
		if now.Before(m.orphans[ok].retryAt) {
			continue
		}
		_ = m.deleteOrphan(ctx, ok) // on failure it stays, to be retried
		if ctx.Err() != nil {
			return
		}
	}
}

// dropSettledOrphans forgets the orphans that need no delete: one that a
// key wants again (same local address, protocol and port), as that key's
// add takes the mapping over, and one whose lease ran out.
func (m *Manager) dropSettledOrphans(des map[string]*desired, now time.Time) {
	for ok, o := range m.orphans {
		if claimed(des, ok) || (!o.expires.IsZero() && !now.Before(o.expires)) {
			delete(m.orphans, ok)
		}
	}
}

// deleteOrphan deletes one orphan's mapping. When that fails the orphan
// stays, with a retry time unless ctx ended.
func (m *Manager) deleteOrphan(ctx context.Context, ok orphanKey) error {
	err := m.delete(ctx, ok)
	if err == nil {
		delete(m.orphans, ok)
		m.log.Info("UPnP mapping deleted", "local", ok.local, "protocol", ok.proto, "port", ok.ext)
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	o := m.orphans[ok]
	o.backoff = m.backoff(o.backoff)
	o.retryAt = m.retryTime(ok.local, o.backoff)
	m.log.Warn("UPnP delete failed; will retry", "key", o.key, "local", ok.local, "protocol", ok.proto, "port", ok.ext,
		"retryIn", o.retryAt.Sub(m.cfg.Clock.Now()), "err", err)
	return err
}

// delete sends one delete from the local address the mapping was made from.
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

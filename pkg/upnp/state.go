package upnp

import (
	"errors"
	"maps"
	"slices"
)

// publish computes every key's State and draining flag, stores those that
// changed and, when notify is set, calls OnChange for them.
func (m *Manager) publish(des map[string]*desired, notify bool) {
	states := m.states(des)
	draining := map[string]bool{}
	for _, o := range m.orphans {
		draining[o.key] = true
	}
	m.mu.Lock()
	changed := m.store(states, draining)
	m.mu.Unlock()
	if !notify || m.cfg.OnChange == nil {
		return
	}
	slices.Sort(changed)
	for _, key := range slices.Compact(changed) {
		m.cfg.OnChange(key)
	}
}

// states is what is in place for every key that is wanted or has mappings.
func (m *Manager) states(des map[string]*desired) map[string]State {
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
	return states
}

// store replaces the published States and draining flags and returns the
// keys whose State or flag changed (unsorted, maybe twice). m.mu is held.
func (m *Manager) store(states map[string]State, draining map[string]bool) []string {
	var changed []string
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
	return changed
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

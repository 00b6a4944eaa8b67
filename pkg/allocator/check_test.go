package allocator

import (
	"fmt"
	"net/netip"
	"slices"
)

// check verifies the Allocator's internal indexes against its assignments
// and the sharing rule. Tests call it after every step.
func (a *Allocator) check() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	want := map[netip.Addr][]string{}
	for o, as := range a.owners {
		if len(as.addrs) == 0 {
			return fmt.Errorf("owner %s holds nothing", o)
		}
		if sorted := slices.SortedFunc(slices.Values(as.addrs), netip.Addr.Compare); len(slices.Compact(sorted)) != len(as.addrs) {
			return fmt.Errorf("owner %s holds an address twice: %v", o, as.addrs)
		}
		for _, x := range as.addrs {
			if !x.IsValid() || x.Is4In6() || x.Zone() != "" {
				return fmt.Errorf("owner %s holds %v", o, x)
			}
			want[x] = append(want[x], o)
		}
	}
	if len(want) != len(a.held) {
		return fmt.Errorf("%d addresses held, index has %d", len(want), len(a.held))
	}
	var n [2]uint64
	for x, owners := range want {
		slices.Sort(owners)
		h := a.held[x]
		if h == nil || !slices.Equal(h.owners, owners) {
			return fmt.Errorf("%s: held by %v, index says %+v", x, owners, h)
		}
		for _, o := range owners {
			if a.owners[o].key != h.key {
				return fmt.Errorf("%s: owner %s has key %q, address has %q", x, o, a.owners[o].key, h.key)
			}
		}
		if len(owners) > 1 {
			if h.key == "" {
				return fmt.Errorf("%s: shared by %v without a key", x, owners)
			}
			for i, o := range owners {
				for _, p := range owners[i+1:] {
					if port, ok := collide(a.owners[o].ports, a.owners[p].ports); ok {
						return fmt.Errorf("%s: %s and %s share port %v", x, o, p, port)
					}
				}
			}
		}
		f := famIdx(FamilyOf(x))
		if !a.used[f].contains(u128From(x)) {
			return fmt.Errorf("%s: held but not in the used set", x)
		}
		n[f]++
		_, inKey := a.byKey[h.key][x]
		if (h.key != "") != inKey {
			return fmt.Errorf("%s: key %q, in key index: %v", x, h.key, inKey)
		}
	}
	for f := range a.used {
		if err := a.used[f].valid(); err != nil {
			return err
		}
		if got := a.used[f].size(); got != n[f] {
			return fmt.Errorf("used set %d has %d addresses, want %d", f, got, n[f])
		}
	}
	for k, m := range a.byKey {
		if len(m) == 0 {
			return fmt.Errorf("empty key index %q", k)
		}
		for x := range m {
			if h := a.held[x]; h == nil || h.key != k {
				return fmt.Errorf("key index %q has %s (%+v)", k, x, h)
			}
		}
	}
	return nil
}

// valid checks that runs are sorted, non-empty, and never touch.
func (s *runSet) valid() error {
	for i, r := range s.runs {
		if r.hi.less(r.lo) {
			return fmt.Errorf("run %d reversed: %+v", i, r)
		}
		if i > 0 {
			prev := s.runs[i-1]
			if next, ok := prev.hi.next(); !ok || !next.less(r.lo) {
				return fmt.Errorf("runs %d and %d touch or overlap: %+v %+v", i-1, i, prev, r)
			}
		}
	}
	return nil
}

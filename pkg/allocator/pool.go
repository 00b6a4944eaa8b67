package allocator

import (
	"cmp"
	"fmt"
	"slices"
)

// LabelMatcher selects by labels: a Kubernetes label selector, adapted by
// the caller (this package imports no Kubernetes code).
type LabelMatcher interface {
	Matches(labels map[string]string) bool
}

// Pool is a named set of addresses, as MetalLB's IPAddressPool.
type Pool struct {
	Name   string
	Ranges []Range // may not overlap each other; ranges of different pools may
	// AutoAssign lets requests that name no pool take addresses from it.
	// Without it the pool is used only when named, or for an address
	// requested in it.
	AutoAssign bool
	// AvoidBuggyIPs skips every IPv4 address ending in .0 or .255 (not only
	// a network's first and last), as MetalLB does.
	AvoidBuggyIPs bool
	// Namespaces the pool serves: those named in Namespaces and those
	// whose labels match one of NamespaceSelectors; both empty means all
	// (MetalLB's serviceAllocation.namespaces and namespaceSelectors).
	Namespaces         []string
	NamespaceSelectors []LabelMatcher
	// ServiceSelectors, if any, restrict the pool further to owners whose
	// labels match one of them (serviceAllocation.serviceSelectors).
	ServiceSelectors []LabelMatcher
	// Priority orders AutoAssign pools: lower first, ties by Name.
	Priority int
}

// Validate checks the pool: a name, valid ranges that do not overlap each
// other. Errors wrap ErrInvalidPool (and the *RangeError).
func (p Pool) Validate() error {
	if p.Name == "" {
		return fmt.Errorf("%w: no name", ErrInvalidPool)
	}
	for _, r := range p.Ranges {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("%w %q: %w", ErrInvalidPool, p.Name, err)
		}
	}
	if err := checkOverlap(p.Ranges, nil); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalidPool, p.Name, err)
	}
	if slices.Contains(p.NamespaceSelectors, nil) || slices.Contains(p.ServiceSelectors, nil) {
		return fmt.Errorf("%w %q: a nil selector", ErrInvalidPool, p.Name)
	}
	return nil
}

// Serves reports whether the pool serves the owner of r: its namespace
// (Namespaces, NamespaceSelectors) and its labels (ServiceSelectors).
func (p Pool) Serves(r Request) bool { return p.refusal(r) == "" }

// refusal says why the pool does not serve the owner of r, or "" if it
// does.
func (p Pool) refusal(r Request) string {
	switch {
	case !p.servesNamespace(r):
		return fmt.Sprintf("namespace %q", r.Namespace)
	case !p.servesLabels(r):
		return fmt.Sprintf("%s (its labels match none of the pool's service selectors)", r.Owner)
	}
	return ""
}

// servesNamespace: the namespace is named, or its labels match a
// selector; a pool restricting neither serves every namespace.
func (p Pool) servesNamespace(r Request) bool {
	if len(p.Namespaces) == 0 && len(p.NamespaceSelectors) == 0 {
		return true
	}
	return slices.Contains(p.Namespaces, r.Namespace) || matchAny(p.NamespaceSelectors, r.NamespaceLabels)
}

// servesLabels: the owner's labels match a service selector, if the pool
// has any.
func (p Pool) servesLabels(r Request) bool {
	return len(p.ServiceSelectors) == 0 || matchAny(p.ServiceSelectors, r.Labels)
}

func matchAny(ms []LabelMatcher, labels map[string]string) bool {
	return slices.ContainsFunc(ms, func(m LabelMatcher) bool { return m.Matches(labels) })
}

// Size returns how many addresses of each family the pool can hand out
// (without .0/.255 with AvoidBuggyIPs), saturated at math.MaxUint64. Ranges
// that do not validate count nothing.
func (p Pool) Size() (v4, v6 uint64) {
	a, b := sizes(p.spans(), p.AvoidBuggyIPs)
	return a.sat64(), b.sat64()
}

func (p Pool) spans() []span {
	out := make([]span, 0, len(p.Ranges))
	for _, r := range p.Ranges {
		if r.check() == nil {
			out = append(out, toSpan(r))
		}
	}
	return out
}

// sizes returns the number of assignable addresses per family, saturated
// at 2^128-1.
func sizes(spans []span, avoid bool) (v4, v6 u128) {
	for _, s := range spans {
		n := width(s.lo, s.hi)
		if s.fam == IPv4 {
			if avoid {
				n = n.sub(u128{0, countBuggy(s.lo.lo, s.hi.lo)})
			}
			v4 = v4.addSat(n)
		} else {
			v6 = v6.addSat(n)
		}
	}
	return v4, v6
}

// Overlap is a range of addresses that two pools share.
type Overlap struct {
	Pools [2]string // in the order the pools were given
	Range Range     // the shared addresses
}

// Overlaps reports every range shared by two different pools, sorted by
// pool positions, then address. The allocator tolerates overlaps (no
// address is handed out twice) but an operator should hear of them.
// Ranges that do not validate are ignored. The cost depends on the number
// of ranges, not on their size.
func Overlaps(pools []Pool) []Overlap {
	type item struct {
		pool int
		s    span
	}
	var items []item
	for i, p := range pools {
		for _, s := range p.spans() {
			items = append(items, item{i, s})
		}
	}
	slices.SortStableFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.s.fam, b.s.fam), a.s.lo.cmp(b.s.lo))
	})
	type found struct {
		a, b int
		s    span
	}
	var out []found
	for i, x := range items {
		for _, y := range items[i+1:] {
			if y.s.fam != x.s.fam || x.s.hi.less(y.s.lo) {
				break // sorted by start: no later item meets x
			}
			if x.pool == y.pool {
				continue
			}
			hi := x.s.hi
			if y.s.hi.less(hi) {
				hi = y.s.hi
			}
			a, b := min(x.pool, y.pool), max(x.pool, y.pool)
			out = append(out, found{a, b, span{fam: x.s.fam, lo: y.s.lo, hi: hi}})
		}
	}
	slices.SortStableFunc(out, func(x, y found) int {
		return cmp.Or(cmp.Compare(x.a, y.a), cmp.Compare(x.b, y.b),
			cmp.Compare(x.s.fam, y.s.fam), x.s.lo.cmp(y.s.lo))
	})
	res := make([]Overlap, len(out))
	for i, f := range out {
		res[i] = Overlap{Pools: [2]string{pools[f.a].Name, pools[f.b].Name}, Range: f.s.rng()}
	}
	return res
}

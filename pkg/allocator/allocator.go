package allocator

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// FamilyPolicy is spec.ipFamilyPolicy, spelled as Kubernetes spells it.
type FamilyPolicy string

// The policies. "" means SingleStack, as an unset ipFamilyPolicy does.
const (
	// SingleStack: exactly one family, required.
	SingleStack FamilyPolicy = "SingleStack"
	// PreferDualStack: one or two families; only the first is required.
	PreferDualStack FamilyPolicy = "PreferDualStack"
	// RequireDualStack: two families, both required.
	RequireDualStack FamilyPolicy = "RequireDualStack"
)

// Port is a Service port that must not collide with the ports of another
// owner sharing an address.
type Port struct {
	Port     int
	Protocol string // TCP, UDP, SCTP; "" means TCP; case does not matter
}

func (p Port) String() string { return strconv.Itoa(p.Port) + "/" + p.Protocol }

// Request is what an owner (a Service) asks for.
type Request struct {
	Owner     string // namespace/name; the key of the assignment
	Namespace string // which pools may serve it
	// Labels are the owner's (the Service's) labels and NamespaceLabels
	// those of its namespace: pools with selectors serve by them.
	Labels, NamespaceLabels map[string]string
	// Families wanted, in order (spec.ipFamilies); Policy says which are
	// required.
	Families []Family
	Policy   FamilyPolicy
	// Pool names the pool to take addresses from; "" means any AutoAssign
	// pool that serves the owner (Pool.Serves).
	Pool string
	// Requested addresses (spec.loadBalancerIP, an annotation), each of
	// one of Families; a family may have several (kube-vip lets a Service
	// ask for more than one address of a family). IPv4-mapped IPv6
	// addresses are unmapped; duplicates count once.
	Requested []netip.Addr
	// SharingKey opts in to sharing addresses with owners of the same key
	// whose ports do not collide; "" never shares.
	SharingKey string
	Ports      []Port
}

// Address is an assigned address and the pool it counts against: the named
// pool, else the first pool by Priority and Name that offers it to the
// owner (Pool.Serves), else the first that contains it, else "" (it is in
// no pool).
type Address struct {
	Addr netip.Addr
	Pool string
}

// Result is the outcome of Assign.
type Result struct {
	Addrs   []Address // by family in the order of Request.Families
	Missing []Family  // optional families (PreferDualStack) left without an address
	Changed bool      // the owner's addresses differ from before the call
}

// Assignment is what an owner holds.
type Assignment struct {
	Owner      string
	Namespace  string // from the last Assign; Restore keeps the previous one
	Addrs      []netip.Addr
	SharingKey string
	Ports      []Port // normalized: protocol upper case, sorted, unique
}

// Orphan is an assigned address that lies in no pool.
type Orphan struct {
	Owner string
	Addr  netip.Addr
}

// Counts of one family of a pool. Total is what the pool can hand out;
// Used counts held addresses within its ranges (also .0/.255 ones restored
// into an AvoidBuggyIPs pool); Free is Total minus the held addresses the
// pool could have handed out. All saturate at math.MaxUint64.
type Counts struct {
	Total, Used, Free uint64
}

// PoolStats are a pool's counts per family.
type PoolStats struct {
	IPv4, IPv6 Counts
}

// Allocator assigns addresses from pools to owners. Create it with New.
type Allocator struct {
	mu     sync.Mutex
	pools  []*pool          // as given
	sorted []*pool          // by Priority, then Name
	byName map[string]*pool //
	cover  [2]runSet        // the union of all pools' ranges, per family

	owners map[string]*assignment
	held   map[netip.Addr]*holding
	used   [2]runSet                          // held addresses, per family
	byKey  map[string]map[netip.Addr]struct{} // held addresses by sharing key
}

type pool struct {
	Pool
	spans []span
}

type holding struct {
	key    string
	owners []string // sorted
}

type assignment struct {
	namespace string
	addrs     []netip.Addr
	key       string
	ports     []Port
}

// of returns the addresses of family f the owner holds, in order.
func (as *assignment) of(f Family) []netip.Addr {
	var out []netip.Addr
	if as != nil {
		for _, a := range as.addrs {
			if FamilyOf(a) == f {
				out = append(out, a)
			}
		}
	}
	return out
}

func (as *assignment) holds(x netip.Addr) bool {
	return as != nil && slices.Contains(as.addrs, x)
}

func famIdx(f Family) int {
	if f == IPv6 {
		return 1
	}
	return 0
}

// New returns an Allocator with the given pools and no assignments.
func New(pools []Pool) (*Allocator, error) {
	a := &Allocator{
		owners: map[string]*assignment{},
		held:   map[netip.Addr]*holding{},
		byKey:  map[string]map[netip.Addr]struct{}{},
	}
	if err := a.SetPools(pools); err != nil {
		return nil, err
	}
	return a, nil
}

// SetPools replaces the pools. Every pool must validate and names must be
// unique; on error nothing changes. Assignments stay as they are, even
// outside every pool (see Orphans).
func (a *Allocator) SetPools(pools []Pool) error {
	built := make([]*pool, 0, len(pools))
	byName := make(map[string]*pool, len(pools))
	var cover [2][]span
	for _, p := range pools {
		if err := p.Validate(); err != nil {
			return err
		}
		if byName[p.Name] != nil {
			return fmt.Errorf("%w: duplicate name %q", ErrInvalidPool, p.Name)
		}
		p.Ranges = slices.Clone(p.Ranges)
		p.Namespaces = slices.Clone(p.Namespaces)
		p.NamespaceSelectors = slices.Clone(p.NamespaceSelectors)
		p.ServiceSelectors = slices.Clone(p.ServiceSelectors)
		ip := &pool{Pool: p, spans: p.spans()}
		for _, s := range ip.spans {
			cover[famIdx(s.fam)] = append(cover[famIdx(s.fam)], s)
		}
		built = append(built, ip)
		byName[p.Name] = ip
	}
	sorted := slices.Clone(built)
	slices.SortStableFunc(sorted, func(x, y *pool) int {
		return cmp.Or(cmp.Compare(x.Priority, y.Priority), strings.Compare(x.Name, y.Name))
	})
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pools, a.sorted, a.byName = built, sorted, byName
	for i := range cover {
		a.cover[i] = mergeSpans(cover[i])
	}
	return nil
}

// mergeSpans returns the union of spans of one family as runs.
func mergeSpans(spans []span) runSet {
	slices.SortFunc(spans, func(x, y span) int { return x.lo.cmp(y.lo) })
	var rs []run
	for _, s := range spans {
		if n := len(rs); n > 0 {
			if next, ok := rs[n-1].hi.next(); !ok || !next.less(s.lo) {
				if rs[n-1].hi.less(s.hi) {
					rs[n-1].hi = s.hi
				}
				continue
			}
		}
		rs = append(rs, run{s.lo, s.hi})
	}
	return runSet{runs: rs}
}

func (p *pool) rangeIndex(addr netip.Addr) int {
	f, u := FamilyOf(addr), u128From(addr)
	for i, s := range p.spans {
		if s.contains(f, u) {
			return i
		}
	}
	return -1
}

func (p *pool) contains(addr netip.Addr) bool { return p.rangeIndex(addr) >= 0 }

// offers reports whether the pool may hand out addr.
func (p *pool) offers(addr netip.Addr) bool {
	if p.AvoidBuggyIPs && addr.Is4() && buggy(u128From(addr)) {
		return false
	}
	return p.contains(addr)
}

func (a *Allocator) inAnyPool(addr netip.Addr) bool {
	return a.cover[famIdx(FamilyOf(addr))].contains(u128From(addr))
}

// request is a validated Request.
type request struct {
	Request
	required [2]bool
	want     [2][]netip.Addr // requested addresses per family, unique
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}

func normalizeRequest(req Request) (*request, error) {
	r := &request{Request: req}
	if r.Owner == "" {
		return nil, invalid("no owner")
	}
	seen, err := r.checkFamilies()
	if err != nil {
		return nil, err
	}
	if err := r.checkPolicy(); err != nil {
		return nil, err
	}
	for _, x := range r.Requested {
		x, err := checkHostAddr(x)
		if err != nil {
			return nil, invalid("requested address: %v", err)
		}
		f := FamilyOf(x)
		if !seen[famIdx(f)] {
			return nil, invalid("requested address %s is %s, not one of the families %v", x, f, r.Families)
		}
		if !slices.Contains(r.want[famIdx(f)], x) {
			r.want[famIdx(f)] = append(r.want[famIdx(f)], x)
		}
	}
	r.Ports = normalizePorts(r.Ports)
	return r, nil
}

// checkFamilies checks the families are known and distinct.
func (r *request) checkFamilies() (seen [2]bool, err error) {
	if len(r.Families) == 0 {
		return seen, invalid("no families")
	}
	for _, f := range r.Families {
		if !f.valid() {
			return seen, invalid("unknown family %q", f)
		}
		if seen[famIdx(f)] {
			return seen, invalid("family %s twice", f)
		}
		seen[famIdx(f)] = true
	}
	return seen, nil
}

// checkPolicy checks the number of families against the policy and marks
// the required ones.
func (r *request) checkPolicy() error {
	switch r.Policy {
	case "", SingleStack:
		if len(r.Families) != 1 {
			return invalid("SingleStack takes one family, not %d", len(r.Families))
		}
		r.required[famIdx(r.Families[0])] = true
	case RequireDualStack:
		if len(r.Families) != 2 {
			return invalid("RequireDualStack takes two families, not %d", len(r.Families))
		}
		r.required = [2]bool{true, true}
	case PreferDualStack:
		r.required[famIdx(r.Families[0])] = true
	default:
		return invalid("unknown family policy %q", r.Policy)
	}
	return nil
}

// checkHostAddr validates a requested or restored address and unmaps it.
func checkHostAddr(x netip.Addr) (netip.Addr, error) {
	switch {
	case !x.IsValid():
		return x, fmt.Errorf("invalid address")
	case x.Zone() != "":
		return x, fmt.Errorf("%s: zones are not allowed", x)
	}
	x = x.Unmap()
	if x.IsUnspecified() {
		return x, fmt.Errorf("%s is unspecified", x)
	}
	return x, nil
}

func normalizePorts(ports []Port) []Port {
	out := make([]Port, 0, len(ports))
	for _, p := range ports {
		p.Protocol = strings.ToUpper(p.Protocol)
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y Port) int {
		return cmp.Or(strings.Compare(x.Protocol, y.Protocol), cmp.Compare(x.Port, y.Port))
	})
	return slices.Compact(out)
}

// collide returns a port found in both normalized lists.
func collide(x, y []Port) (Port, bool) {
	for len(x) > 0 && len(y) > 0 {
		switch c := cmp.Or(strings.Compare(x[0].Protocol, y[0].Protocol), cmp.Compare(x[0].Port, y[0].Port)); {
		case c == 0:
			return x[0], true
		case c < 0:
			x = x[1:]
		default:
			y = y[1:]
		}
	}
	return Port{}, false
}

// joinable returns an *InUseError if owner may not hold addr next to its
// other holders with this key and these (normalized) ports.
func (a *Allocator) joinable(addr netip.Addr, owner, key string, ports []Port) error {
	h := a.held[addr]
	if h == nil {
		return nil
	}
	others := make([]string, 0, len(h.owners))
	for _, o := range h.owners {
		if o != owner {
			others = append(others, o)
		}
	}
	if len(others) == 0 {
		return nil
	}
	e := &InUseError{Addr: addr, Holders: others}
	switch {
	case key == "":
		e.Reason = "the request has no sharing key"
	case h.key == "":
		e.Reason = "its holders do not share it (no sharing key)"
	case h.key != key:
		e.Reason = fmt.Sprintf("shared under key %q, not %q", h.key, key)
	}
	if e.Reason != "" {
		return e
	}
	for _, o := range others {
		if p, ok := collide(a.owners[o].ports, ports); ok {
			e.Reason = fmt.Sprintf("port %s collides with %s", p, o)
			return e
		}
	}
	return nil
}

// checkRequested checks that a pool serving the owner offers addr.
func (a *Allocator) checkRequested(addr netip.Addr, r *request, named *pool) error {
	if named != nil {
		if !named.offers(addr) {
			return fmt.Errorf("%w: %s is not in pool %q%s", ErrNotInPool, addr, named.Name, avoidNote(named, addr))
		}
		return nil
	}
	var refused []string // "pool, which does not serve namespace "dev""
	for _, p := range a.sorted {
		if p.offers(addr) {
			why := p.refusal(r.Request)
			if why == "" {
				return nil
			}
			refused = append(refused, p.Name+", which does not serve "+why)
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("%w: %s is in pool %s", ErrPoolNotAllowed, addr, strings.Join(refused, "; in pool "))
	}
	return fmt.Errorf("%w: %s is not in any pool", ErrNotInPool, addr)
}

func avoidNote(p *pool, addr netip.Addr) string {
	if p.contains(addr) {
		return " (it avoids addresses ending in .0 and .255)"
	}
	return ""
}

// Assign gives req.Owner addresses for req, or confirms those it holds. See
// the package documentation for the rules. On error nothing changes.
func (a *Allocator) Assign(req Request) (Result, error) {
	r, err := normalizeRequest(req)
	if err != nil {
		return Result{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	named, namedErr := a.namedPool(r)
	fixed, needed, err := a.settle(r, named, namedErr)
	if err != nil {
		return Result{}, err
	}
	got, missing, err := a.pick(r, named, namedErr, fixed, needed)
	if err != nil {
		return Result{}, err
	}
	res := Result{Missing: missing}
	var addrs []netip.Addr
	add := func(x netip.Addr) {
		addrs = append(addrs, x)
		res.Addrs = append(res.Addrs, Address{Addr: x, Pool: a.poolOf(x, r, named)})
	}
	for _, f := range r.Families {
		if x := got[famIdx(f)]; x.IsValid() {
			add(x)
			continue
		}
		for _, x := range fixed[famIdx(f)] {
			add(x)
		}
	}
	res.Changed = a.commit(r.Owner, r.Namespace, addrs, r.SharingKey, r.Ports)
	return res, nil
}

// namedPool returns the pool the request names. A named pool that is
// missing or does not serve the owner (its namespace or labels) is an
// error (namedErr) only when something must be taken from it: what the
// owner holds is kept (pool edits and label changes never move an
// address).
func (a *Allocator) namedPool(r *request) (named *pool, namedErr error) {
	if r.Pool == "" {
		return nil, nil
	}
	named = a.byName[r.Pool]
	if named == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchPool, r.Pool)
	}
	if why := named.refusal(r.Request); why != "" {
		namedErr = fmt.Errorf("%w: pool %q does not serve %s", ErrPoolNotAllowed, r.Pool, why)
	}
	return named, namedErr
}

// keepable reports whether the request lets the owner keep x: no pool is
// named, x is in the named pool, or x is in no pool at all.
func (a *Allocator) keepable(r *request, named *pool, x netip.Addr) bool {
	return r.Pool == "" || named != nil && named.contains(x) || !a.inAnyPool(x)
}

// settle decides, per family, the addresses that are fixed: all those
// requested (each checked), else the first the owner holds and may keep.
// The families left need an address picked.
func (a *Allocator) settle(r *request, named *pool, namedErr error) (fixed [2][]netip.Addr, needed []Family, err error) {
	cur := a.owners[r.Owner]
	for _, f := range r.Families {
		i := famIdx(f)
		if len(r.want[i]) > 0 {
			for _, want := range r.want[i] {
				if err := a.admit(r, cur, want, named, namedErr); err != nil {
					return fixed, nil, err
				}
			}
			fixed[i] = r.want[i]
			continue
		}
		if have, ok := a.kept(r, cur, f, named); ok {
			fixed[i] = []netip.Addr{have}
			continue
		}
		needed = append(needed, f)
	}
	return fixed, needed, nil
}

// admit checks a requested address: a pool must offer it unless the owner
// holds it already and may keep it, and its other holders must let the
// owner share it.
func (a *Allocator) admit(r *request, cur *assignment, want netip.Addr, named *pool, namedErr error) error {
	if !cur.holds(want) || !a.keepable(r, named, want) {
		if namedErr != nil {
			return namedErr
		}
		if err := a.checkRequested(want, r, named); err != nil {
			return err
		}
	}
	return a.joinable(want, r.Owner, r.SharingKey, r.Ports)
}

// kept returns the first address of family f the owner holds and may keep.
func (a *Allocator) kept(r *request, cur *assignment, f Family, named *pool) (netip.Addr, bool) {
	for _, have := range cur.of(f) {
		if a.keepable(r, named, have) && a.joinable(have, r.Owner, r.SharingKey, r.Ports) == nil {
			return have, true
		}
	}
	return netip.Addr{}, false
}

// pick finds addresses for the needed families: from the named pool, else
// from the AutoAssign pools serving the owner.
func (a *Allocator) pick(r *request, named *pool, namedErr error, fixed [2][]netip.Addr, needed []Family) (got [2]netip.Addr, missing []Family, err error) {
	if len(needed) == 0 {
		return got, nil, nil
	}
	cands := a.candidates(r, named, namedErr)
	if len(cands) == 0 {
		missing, err := a.noCandidates(r, namedErr, needed)
		return got, missing, err
	}
	ordered := holdersFirst(cands, fixed)
	if len(needed) > 1 { // all from one pool, if one can
		if try, ok := a.pickTogether(ordered, needed, r); ok {
			return try, nil, nil
		}
	}
	return a.pickEach(ordered, needed, r)
}

// candidates are the pools an address may be taken from.
func (a *Allocator) candidates(r *request, named *pool, namedErr error) []*pool {
	switch {
	case namedErr != nil:
		return nil
	case named != nil:
		return []*pool{named}
	}
	var cands []*pool
	for _, p := range a.sorted {
		if p.AutoAssign && p.Serves(r.Request) {
			cands = append(cands, p)
		}
	}
	return cands
}

// noCandidates: optional families are missing, a required one is an error
// (namedErr, else ErrNoPool).
func (a *Allocator) noCandidates(r *request, namedErr error, needed []Family) ([]Family, error) {
	for _, f := range needed {
		if r.required[famIdx(f)] {
			if namedErr != nil {
				return nil, namedErr
			}
			return nil, a.noPool(r)
		}
	}
	return needed, nil
}

// noPool is ErrNoPool, naming the AutoAssign pools that serve the
// namespace but whose service selectors the owner's labels do not match.
func (a *Allocator) noPool(r *request) error {
	var byLabels []string
	for _, p := range a.sorted {
		if p.AutoAssign && p.servesNamespace(r.Request) {
			byLabels = append(byLabels, p.Name)
		}
	}
	if len(byLabels) > 0 {
		return fmt.Errorf("%w: namespace %q: the labels of %s match no service selector of pool %s", ErrNoPool, r.Namespace, r.Owner, strings.Join(byLabels, ", "))
	}
	return fmt.Errorf("%w: namespace %q", ErrNoPool, r.Namespace)
}

// holdersFirst orders the pools that contain all the owner's fixed
// addresses before the others, keeping the order within each group.
func holdersFirst(cands []*pool, fixed [2][]netip.Addr) []*pool {
	if len(fixed[0]) == 0 && len(fixed[1]) == 0 {
		return cands
	}
	ordered := make([]*pool, 0, len(cands))
	for _, p := range cands {
		if holdsAll(p, &fixed) {
			ordered = append(ordered, p)
		}
	}
	for _, p := range cands {
		if !holdsAll(p, &fixed) {
			ordered = append(ordered, p)
		}
	}
	return ordered
}

func holdsAll(p *pool, fixed *[2][]netip.Addr) bool {
	for _, xs := range fixed {
		for _, x := range xs {
			if !p.contains(x) {
				return false
			}
		}
	}
	return true
}

// pickTogether takes every needed family from the first pool that has all.
func (a *Allocator) pickTogether(ordered []*pool, needed []Family, r *request) ([2]netip.Addr, bool) {
pools:
	for _, p := range ordered {
		var try [2]netip.Addr
		for _, f := range needed {
			x, ok := a.pickFrom(p, f, r)
			if !ok {
				continue pools
			}
			try[famIdx(f)] = x
		}
		return try, true
	}
	return [2]netip.Addr{}, false
}

// pickEach takes each needed family from the first pool that has one. A
// required family that none has is an *ExhaustedError, an optional one is
// missing.
func (a *Allocator) pickEach(ordered []*pool, needed []Family, r *request) (got [2]netip.Addr, missing []Family, err error) {
	for _, f := range needed {
		found := false
		for _, p := range ordered {
			if x, ok := a.pickFrom(p, f, r); ok {
				got[famIdx(f)], found = x, true
				break
			}
		}
		switch {
		case found:
		case r.required[famIdx(f)]:
			names := make([]string, len(ordered))
			for i, p := range ordered {
				names[i] = p.Name
			}
			return [2]netip.Addr{}, nil, &ExhaustedError{Family: f, Pools: names}
		default:
			missing = append(missing, f)
		}
	}
	return got, missing, nil
}

// pickFrom returns an address of family f from pool p for r: with a
// sharing key, the first address (by range, then address) already held
// under that key that r may join; else the lowest free address.
func (a *Allocator) pickFrom(p *pool, f Family, r *request) (netip.Addr, bool) {
	if r.SharingKey != "" {
		var best netip.Addr
		bestRange := -1
		for x := range a.byKey[r.SharingKey] {
			if FamilyOf(x) != f || !p.offers(x) || a.joinable(x, r.Owner, r.SharingKey, r.Ports) != nil {
				continue
			}
			ri := p.rangeIndex(x)
			if !best.IsValid() || ri < bestRange || ri == bestRange && x.Less(best) {
				best, bestRange = x, ri
			}
		}
		if best.IsValid() {
			return best, true
		}
	}
	used := &a.used[famIdx(f)]
	for _, s := range p.spans {
		if s.fam != f {
			continue
		}
		if u, ok := used.firstFree(s.lo, s.hi, p.AvoidBuggyIPs && f == IPv4); ok {
			return u.addr(f), true
		}
	}
	return netip.Addr{}, false
}

// poolOf names the pool an address counts against.
func (a *Allocator) poolOf(x netip.Addr, r *request, named *pool) string {
	if named != nil && named.contains(x) {
		return named.Name
	}
	for _, p := range a.sorted {
		if p.Serves(r.Request) && p.offers(x) {
			return p.Name
		}
	}
	for _, p := range a.sorted {
		if p.contains(x) {
			return p.Name
		}
	}
	return ""
}

// commit makes addrs the owner's addresses and reports whether the set of
// addresses changed. Sharing must have been checked.
func (a *Allocator) commit(owner, namespace string, addrs []netip.Addr, key string, ports []Port) bool {
	cur := a.owners[owner]
	var old []netip.Addr
	if cur != nil {
		old = cur.addrs
	}
	for _, x := range old {
		if !slices.Contains(addrs, x) {
			a.unhold(x, owner)
		}
	}
	for _, x := range addrs {
		if slices.Contains(old, x) {
			a.rekey(x, key)
		} else {
			a.hold(x, owner, key)
		}
	}
	if len(addrs) == 0 {
		delete(a.owners, owner)
	} else {
		a.owners[owner] = &assignment{namespace: namespace, addrs: addrs, key: key, ports: ports}
	}
	if len(old) != len(addrs) {
		return true
	}
	for _, x := range old {
		if !slices.Contains(addrs, x) {
			return true
		}
	}
	return false
}

func (a *Allocator) hold(x netip.Addr, owner, key string) {
	h := a.held[x]
	if h == nil {
		h = &holding{key: key}
		a.held[x] = h
		a.used[famIdx(FamilyOf(x))].add(u128From(x))
		a.index(x, key)
	}
	i, _ := slices.BinarySearch(h.owners, owner)
	h.owners = slices.Insert(h.owners, i, owner)
}

func (a *Allocator) unhold(x netip.Addr, owner string) {
	h := a.held[x]
	if i, ok := slices.BinarySearch(h.owners, owner); ok {
		h.owners = slices.Delete(h.owners, i, i+1)
	}
	if len(h.owners) == 0 {
		delete(a.held, x)
		a.used[famIdx(FamilyOf(x))].remove(u128From(x))
		a.unindex(x, h.key)
	}
}

// rekey changes the sharing key of an address the owner keeps (it is then
// its only holder, or the key is unchanged).
func (a *Allocator) rekey(x netip.Addr, key string) {
	h := a.held[x]
	if h.key == key {
		return
	}
	a.unindex(x, h.key)
	h.key = key
	a.index(x, key)
}

func (a *Allocator) index(x netip.Addr, key string) {
	if key == "" {
		return
	}
	m := a.byKey[key]
	if m == nil {
		m = map[netip.Addr]struct{}{}
		a.byKey[key] = m
	}
	m[x] = struct{}{}
}

func (a *Allocator) unindex(x netip.Addr, key string) {
	if m := a.byKey[key]; m != nil {
		delete(m, x)
		if len(m) == 0 {
			delete(a.byKey, key)
		}
	}
}

// Release frees everything owner holds (an address shared with others stays
// theirs). Unknown owners are ignored.
func (a *Allocator) Release(owner string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.commit(owner, "", nil, "", nil)
}

// Restore records that owner holds addrs (any number per family), as read
// back from a Service at start or after a leader change. The addresses need
// not lie in any pool. An address held by another owner that owner may not
// share (no common non-empty key, or colliding ports) is an *InUseError and
// changes nothing: the caller decides who keeps it, typically the older
// Service, by restoring in order of age. An empty addrs releases owner.
// IPv4-mapped IPv6 addresses are unmapped; duplicates count once.
func (a *Allocator) Restore(owner string, addrs []netip.Addr, sharingKey string, ports []Port) error {
	if owner == "" {
		return invalid("no owner")
	}
	var list []netip.Addr
	for _, x := range addrs {
		x, err := checkHostAddr(x)
		if err != nil {
			return fmt.Errorf("restore %s: %w", owner, invalid("%v", err))
		}
		if !slices.Contains(list, x) {
			list = append(list, x)
		}
	}
	ports = normalizePorts(ports)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, x := range list {
		if err := a.joinable(x, owner, sharingKey, ports); err != nil {
			return fmt.Errorf("restore %s: %w", owner, err)
		}
	}
	ns := ""
	if cur := a.owners[owner]; cur != nil {
		ns = cur.namespace
	}
	a.commit(owner, ns, list, sharingKey, ports)
	return nil
}

// Lookup returns what owner holds.
func (a *Allocator) Lookup(owner string) (Assignment, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	as := a.owners[owner]
	if as == nil {
		return Assignment{}, false
	}
	return as.export(owner), true
}

func (as *assignment) export(owner string) Assignment {
	return Assignment{
		Owner:      owner,
		Namespace:  as.namespace,
		Addrs:      slices.Clone(as.addrs),
		SharingKey: as.key,
		Ports:      slices.Clone(as.ports),
	}
}

// Assignments returns every assignment, sorted by owner.
func (a *Allocator) Assignments() []Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Assignment, 0, len(a.owners))
	for o, as := range a.owners {
		out = append(out, as.export(o))
	}
	slices.SortFunc(out, func(x, y Assignment) int { return strings.Compare(x.Owner, y.Owner) })
	return out
}

// Holders returns the owners holding addr, sorted.
func (a *Allocator) Holders(addr netip.Addr) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h := a.held[addr.Unmap()]; h != nil {
		return slices.Clone(h.owners)
	}
	return nil
}

// Orphans returns the assigned addresses that lie in no pool, sorted by
// owner, then address.
func (a *Allocator) Orphans() []Orphan {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Orphan
	for o, as := range a.owners {
		for _, x := range as.addrs {
			if !a.inAnyPool(x) {
				out = append(out, Orphan{Owner: o, Addr: x})
			}
		}
	}
	slices.SortFunc(out, func(x, y Orphan) int {
		return cmp.Or(strings.Compare(x.Owner, y.Owner), x.Addr.Compare(y.Addr))
	})
	return out
}

// Stats returns each pool's counts, by pool name. An address in two pools
// counts as used in both.
func (a *Allocator) Stats() map[string]PoolStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]PoolStats, len(a.pools))
	for _, p := range a.pools {
		t4, t6 := sizes(p.spans, p.AvoidBuggyIPs)
		var u4, u6, ua4 uint64
		for _, s := range p.spans {
			n, b := a.used[famIdx(s.fam)].count(s.lo, s.hi, s.fam == IPv4)
			if s.fam == IPv6 {
				u6 += n
				continue
			}
			u4 += n
			if p.AvoidBuggyIPs {
				n -= b
			}
			ua4 += n
		}
		out[p.Name] = PoolStats{
			IPv4: Counts{Total: t4.sat64(), Used: u4, Free: t4.subSat(u128{0, ua4}).sat64()},
			IPv6: Counts{Total: t6.sat64(), Used: u6, Free: t6.subSat(u128{0, u6}).sat64()},
		}
	}
	return out
}

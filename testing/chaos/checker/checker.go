package checker

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kind names an invariant.
type Kind string

// The invariants (see the package doc).
const (
	TwoHolders     Kind = "two-holders"
	NotAnnounced   Kind = "not-announced"
	StatusMismatch Kind = "status-mismatch"
	AddressClash   Kind = "address-clash"
	AgentExit      Kind = "agent-exit"
	Leftover       Kind = "leftover"
)

// Violation is one episode of a broken invariant. End is zero while it is
// still going on.
type Violation struct {
	Kind    Kind
	Subject string // the VIP, Service or node it is about
	Detail  string
	Start   time.Time
	End     time.Time
}

func (v Violation) String() string {
	end := "still open"
	if !v.End.IsZero() {
		end = fmt.Sprintf("for %v", v.End.Sub(v.Start).Round(time.Millisecond))
	}
	return fmt.Sprintf("%s %s %s: %s (%s)", v.Start.UTC().Format("15:04:05.000"), v.Kind, v.Subject, v.Detail, end)
}

// Config tunes the checker.
type Config struct {
	// LeaseDuration is the agents' Lease duration: a touched Service must be
	// announced again LeaseDuration + 1 s after the fault healed.
	LeaseDuration time.Duration
	// AnswerWindow: a VIP counts as announced while some node answered a
	// probe sent within this window (default 500 ms: five probe rounds).
	AnswerWindow time.Duration
	// StatusSlack is how long the status may disagree with the network
	// (default 2 s).
	StatusSlack time.Duration
}

// Service is what the campaign wants for one Service right now.
type Service struct {
	Name string
	// Addrs are the addresses it asks for; empty when the allocator or DHCP
	// picks them (then they are taken from the API's view).
	Addrs []netip.Addr
	// Share: Services with the same non-empty key may share an address.
	Share string
	// Announce: it exists, is not ignored and has an eligible endpoint.
	Announce bool
	// Managed: vigil owns its status (not ignored, not another class).
	Managed bool
	// Eligible are the nodes that may hold it (nil: any node).
	Eligible []string
}

// APIService is one Service as the API server shows it.
type APIService struct {
	Name     string
	Ingress  []netip.Addr
	Assigned []netip.Addr // kube-vip.io/loadbalancerIPs written by the allocator or DHCP
}

// Gap is a time a VIP that had been answered went unanswered.
type Gap struct {
	VIP       netip.Addr
	FaultKind string // the fault it is blamed on ("none": no fault touching its Service)
	Start     time.Time
	Length    time.Duration
}

// Checker records violations from the samples and events it is fed. It is
// safe for concurrent use.
type Checker struct {
	mu  sync.Mutex
	cfg Config

	svcs       map[string]*wanted
	faults     map[int]*fault
	nextFault  int
	faultKinds map[string]int
	apiUp      bool
	apiUpSince time.Time

	held       map[netip.Addr][]string
	routes     map[netip.Addr][]string // a BGP router's host routes, by VIP
	lastAnswer map[netip.Addr]time.Time
	api        map[string]APIService
	mismatch   map[string]time.Time

	open map[string]*Violation
	done []Violation
	gaps []Gap
}

type wanted struct {
	Service
	changed  time.Time
	lastHeal time.Time
	healKind string // the kind of the fault whose heal is lastHeal
}

type fault struct {
	kind   string
	scope  Scope
	start  time.Time
	healed time.Time
}

// New returns a checker; the API server counts as up from the start.
func New(cfg Config, start time.Time) *Checker {
	if cfg.AnswerWindow == 0 {
		cfg.AnswerWindow = 500 * time.Millisecond
	}
	if cfg.StatusSlack == 0 {
		cfg.StatusSlack = 2 * time.Second
	}
	return &Checker{
		cfg: cfg, svcs: map[string]*wanted{}, faults: map[int]*fault{}, faultKinds: map[string]int{},
		apiUp: true, apiUpSince: start,
		held: map[netip.Addr][]string{}, lastAnswer: map[netip.Addr]time.Time{},
		api: map[string]APIService{}, mismatch: map[string]time.Time{}, open: map[string]*Violation{},
	}
}

func (c *Checker) grace() time.Duration { return c.cfg.LeaseDuration + time.Second }

// Want sets what a Service should look like from now on (a change restarts
// its grace period, as a fault's heal does).
func (c *Checker) Want(at time.Time, s Service) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.svcs[s.Name]
	if w == nil {
		w = &wanted{}
		c.svcs[s.Name] = w
	}
	w.Service, w.changed = s, at
}

// Forget says the Service was deleted.
func (c *Checker) Forget(at time.Time, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.svcs, name)
	delete(c.mismatch, name)
}

// Scope is what a fault touches: one node (and so every Service that node
// holds or could hold), an explicit list of Services, or everything.
type Scope struct {
	Node     string
	Services []string
	All      bool
}

// FaultStarted records a fault of kind and returns its id for FaultHealed.
func (c *Checker) FaultStarted(at time.Time, kind string, scope Scope) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextFault++
	c.faults[c.nextFault] = &fault{kind: kind, scope: scope, start: at}
	c.faultKinds[kind]++
	return c.nextFault
}

// FaultHealed records that the fault's undo step ran.
func (c *Checker) FaultHealed(at time.Time, id int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.faults[id]
	if f == nil || !f.healed.IsZero() {
		return
	}
	f.healed = at
	for _, w := range c.svcs {
		if c.touches(f, w) {
			w.lastHeal, w.healKind = at, f.kind
		}
	}
}

// APIState records the API server going down or coming back.
func (c *Checker) APIState(at time.Time, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if up && !c.apiUp {
		c.apiUpSince = at
	}
	c.apiUp = up
}

// AgentExited records an agent exit the campaign did not ask for.
func (c *Checker) AgentExited(at time.Time, node, detail string) {
	c.Record(Violation{Kind: AgentExit, Subject: node, Detail: detail, Start: at, End: at})
}

// Record adds a violation found by a one-off check (leftovers, exits).
func (c *Checker) Record(v Violation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = append(c.done, v)
}

func (c *Checker) touches(f *fault, w *wanted) bool {
	switch {
	case f.scope.All:
		return true
	case f.scope.Node != "":
		return w.Eligible == nil || slices.Contains(w.Eligible, f.scope.Node)
	}
	return slices.Contains(f.scope.Services, w.Name)
}

// settledSince says when the Service may be required to be announced: never
// while a fault touching it is active, else LeaseDuration + 1 s after its
// last change or the last heal of a fault that touched it.
func (c *Checker) settledSince(w *wanted) (time.Time, bool) {
	for _, f := range c.faults {
		if f.healed.IsZero() && c.touches(f, w) {
			return time.Time{}, false
		}
	}
	last := w.changed
	if w.lastHeal.After(last) {
		last = w.lastHeal
	}
	return last.Add(c.grace()), true
}

// settledBy names what w last settled from: the kind of the fault healed
// last, or "change" (the Service or its endpoints changed).
func settledBy(w *wanted) string {
	if w.lastHeal.After(w.changed) {
		return w.healKind + " healed"
	}
	return "changed"
}

// openOrKeep opens an episode for key (if not open yet); close ends it.
func (c *Checker) openOrKeep(key string, v Violation) {
	if cur, ok := c.open[key]; ok {
		cur.Detail = v.Detail
		return
	}
	c.open[key] = &v
}

func (c *Checker) close(key string, at time.Time) {
	if v, ok := c.open[key]; ok {
		v.End = at
		c.done = append(c.done, *v)
		delete(c.open, key)
	}
}

// closeMissing ends every open episode of kind whose key is not in still.
func (c *Checker) closeMissing(kind Kind, prefix string, still map[string]bool, at time.Time) {
	for key, v := range c.open {
		if v.Kind == kind && strings.HasPrefix(key, prefix) && !still[key] {
			c.close(key, at)
		}
	}
}

// Violations lists every episode so far, open ones with a zero End, by start.
func (c *Checker) Violations() []Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]Violation(nil), c.done...)
	for _, v := range c.open {
		out = append(out, *v)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Gaps lists the answer gaps seen so far.
func (c *Checker) Gaps() []Gap {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Gap(nil), c.gaps...)
}

// FaultCounts is how many faults of each kind were started.
func (c *Checker) FaultCounts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, n := range c.faultKinds {
		out[k] = n
	}
	return out
}

// Held is the last netlink sample: which nodes hold each address.
func (c *Checker) Held() map[netip.Addr][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[netip.Addr][]string, len(c.held))
	for a, n := range c.held {
		out[a] = append([]string(nil), n...)
	}
	return out
}

// LastAnswer is when a probe for a was last answered (zero: never).
func (c *Checker) LastAnswer(a netip.Addr) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastAnswer[a]
}

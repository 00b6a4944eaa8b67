package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
)

// Names and annotations of the node-heartbeat mode.
const (
	NodeLeasePrefix     = "vigil-heartbeat-"
	ModeAnnotation      = election.ModeAnnotation
	DurationsAnnotation = "vigil.io/lease-durations"
	Mode                = election.ModeNode
)

// Config is the elector's configuration.
type Config struct {
	Identity      string        // node name: holder identity
	Instance      string        // unique per process start
	LeaseDuration time.Duration // default 5s
	RenewDeadline time.Duration // default 3s; RetryPeriod < RenewDeadline < LeaseDuration
	RetryPeriod   time.Duration // default 1s; how soon a failed heartbeat or write is tried again (at most Interval)
	// Interval is how often the node Lease is renewed; default
	// LeaseDuration/3. It must be shorter than RenewDeadline.
	Interval time.Duration
	// NodeNamespace holds the node Leases (required).
	NodeNamespace string
	// Namespace restricts the Lease informer ("" = all namespaces).
	Namespace string
	// RankDelay is how long the node ranked r waits (r × RankDelay) before
	// taking a free Service; default 100ms.
	RankDelay time.Duration
	// Workers decide Services in parallel; default 8.
	Workers int
	Clock   clock.Clock // nil: clock.Real{}
	// OnMismatch, if set, is called whenever another agent is seen running
	// another election mode or other durations.
	OnMismatch func(node, detail string)
	// Keeper and Kept: the LAN liveness, with pkg/election's rules
	// (keep.go): this node's heartbeat term is kept past its deadline while
	// the Keeper vouches, and no Service Lease is written unless this node
	// reaches the API in the epoch its decision was made in.
	Keeper election.Keeper
	Kept   func(key election.Key, held time.Duration)
}

func (c *Config) defaults() error {
	if c.LeaseDuration == 0 {
		c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 5*time.Second, 3*time.Second, time.Second
	}
	if c.Interval == 0 {
		c.Interval = c.LeaseDuration / 3
	}
	if c.RankDelay == 0 {
		c.RankDelay = 100 * time.Millisecond
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	switch {
	case c.Identity == "" || c.Instance == "":
		return errors.New("heartbeat: empty identity or instance id")
	case c.NodeNamespace == "":
		return errors.New("heartbeat: no namespace for the node Leases")
	case c.RenewDeadline >= c.LeaseDuration:
		return fmt.Errorf("heartbeat: renew deadline %v must be shorter than lease duration %v", c.RenewDeadline, c.LeaseDuration)
	case c.RetryPeriod <= 0 || c.RetryPeriod >= c.RenewDeadline:
		return fmt.Errorf("heartbeat: retry period %v must be positive and shorter than renew deadline %v", c.RetryPeriod, c.RenewDeadline)
	case c.Interval <= 0 || c.Interval >= c.RenewDeadline:
		return fmt.Errorf("heartbeat: interval %v must be positive and shorter than renew deadline %v", c.Interval, c.RenewDeadline)
	case c.Keeper != nil && c.Keeper.Fresh() >= c.RenewDeadline:
		return fmt.Errorf("heartbeat: LAN report freshness %v must be shorter than renew deadline %v", c.Keeper.Fresh(), c.RenewDeadline)
	}
	return nil
}

// durations is this configuration as the node Lease annotation says it.
func (c Config) durations() string {
	return fmt.Sprintf("%v/%v/%v", c.LeaseDuration, c.RenewDeadline, c.RetryPeriod)
}

// Elector runs this node's side of every Service election in node-heartbeat
// mode. Its methods match what the agent needs (see pkg/agent.Elector).
type Elector struct {
	cfg    Config
	clock  clock.Clock
	client election.Client
	notify func(election.Key)
	log    *slog.Logger

	informers kubeclient.Informers
	lister    coordinationlisters.LeaseLister
	synced    cache.InformerSynced
	queue     *workqueue.Typed[election.Key]

	mu       sync.Mutex
	running  bool
	stopped  bool
	nodes    map[string]*nodeRec
	svcs     map[election.Key]svcRec
	cands    map[election.Key]*cand
	beat     beatState
	reported map[string]string // node → the mismatch last reported
	beatNow  chan struct{}     // capacity 1: send a heartbeat now (a kept term, the API back)
	wakes    map[election.Key]*wake
}

// cand is this node's candidacy for one Service.
type cand struct {
	held      bool   // our write of the Service Lease was accepted in this heartbeat term
	confirmed bool   // … and the informer has shown it
	rv        string // resourceVersion of our last accepted write
	freeAt    time.Time
	conflict  *string // resourceVersion of the record a write of ours lost a 409 on
	timer     clock.Timer
}

// New returns an elector; notify is called whenever this node's leadership
// of a key changes or another holder appears, is released or is gone.
func New(cfg Config, client election.Client, notify func(election.Key), log *slog.Logger) (*Elector, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	e := &Elector{
		cfg: cfg, clock: cfg.Clock, client: client, notify: notify, log: log.With("election", "node"),
		queue: workqueue.NewTyped[election.Key](), beatNow: make(chan struct{}, 1),
		nodes: map[string]*nodeRec{}, svcs: map[election.Key]svcRec{}, cands: map[election.Key]*cand{},
		reported: map[string]string{}, wakes: map[election.Key]*wake{},
	}
	inf, err := election.LeaseCache(client, cfg.Namespace, cfg.RetryPeriod, cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { e.observe(obj, false) },
		UpdateFunc: func(_, obj any) { e.observe(obj, false) },
		DeleteFunc: func(obj any) { e.observe(obj, true) },
	})
	if err != nil {
		return nil, fmt.Errorf("heartbeat: lease cache: %w", err)
	}
	e.lister, e.synced = coordinationlisters.NewLeaseLister(inf.GetIndexer()), inf.HasSynced
	e.informers.Add(inf)
	return e, nil
}

// Config returns the configuration in use, defaults filled in.
func (e *Elector) Config() Config { return e.cfg }

// HasSynced reports whether the Lease cache is filled.
func (e *Elector) HasSynced() bool { return e.synced() }

// Run starts the informer, the heartbeat and the deciding workers, and
// blocks until ctx ends. Services are not released: call ResignAll first
// for a graceful shutdown.
func (e *Elector) Run(ctx context.Context) error {
	e.informers.Start(ctx.Done())
	defer e.informers.Shutdown()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer e.stop()
	if !cache.WaitForCacheSync(ctx.Done(), e.synced) {
		return nil
	}
	e.mu.Lock()
	e.running = true
	e.mu.Unlock()
	for range e.cfg.Workers {
		wg.Go(func() { e.work(ctx) })
	}
	wg.Go(func() { e.heartbeat(ctx) })
	<-ctx.Done()
	return nil
}

// stop ends the workers and every timer; later Campaigns do nothing.
func (e *Elector) stop() {
	e.queue.ShutDown()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.running, e.stopped = false, true
	for _, c := range e.cands {
		stopTimer(c)
	}
	for _, n := range e.nodes {
		n.timer.Stop()
	}
	for _, w := range e.wakes {
		w.timer.Stop()
	}
	if e.beat.deadline != nil {
		e.beat.deadline.Stop()
	}
}

func (e *Elector) work(ctx context.Context) {
	for {
		key, quit := e.queue.Get()
		if quit {
			return
		}
		if ctx.Err() == nil {
			e.step(ctx, key)
		}
		e.queue.Done(key)
	}
}

// Campaign makes this node a candidate for key (idempotent).
func (e *Elector) Campaign(key election.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped || e.cands[key] != nil {
		return
	}
	e.cands[key] = &cand{}
	if e.running {
		e.queue.Add(key)
	}
}

// Campaigning reports whether this node is a candidate for key.
func (e *Elector) Campaigning(key election.Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cands[key] != nil
}

// Leading reports whether this node holds key right now.
func (e *Elector) Leading(key election.Key) bool {
	_, ok := e.Term(key)
	return ok
}

// Term returns this node's current hold of key: the deadline and expiry
// come from its last accepted heartbeat.
func (e *Elector) Term(key election.Key) (election.Term, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.cands[key]
	r, ok := e.svcs[key]
	t, alive := e.termLocked(e.clock.Now())
	if c == nil || !c.held || !c.confirmed || !ok || !e.mine(r) || !alive {
		return election.Term{}, false
	}
	return t, true
}

// HeldByOther reports whether, as far as this node has seen, someone else
// holds key and is alive.
func (e *Elector) HeldByOther(key election.Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.svcs[key]
	if !ok || r.holder == "" || e.mine(r) {
		return false
	}
	now := e.clock.Now()
	dead, until := e.holderDead(r, now)
	if n := e.nodes[r.holder]; !dead && (n == nil || !n.alive(now)) {
		// No heartbeat timer will tell when this answer changes (the
		// record's own sighting keeps it held): notify then.
		e.notifyAtLocked(key, until)
	}
	return !dead
}

// notifyAtLocked notifies key at at, once, unless a notification for it is
// already due by then; mu must be held.
func (e *Elector) notifyAtLocked(key election.Key, at time.Time) {
	if w, ok := e.wakes[key]; ok {
		if !w.at.After(at) {
			return
		}
		w.timer.Stop()
	}
	w := &wake{at: at}
	w.timer = e.clock.AfterFunc(at, func() {
		e.mu.Lock()
		current := e.wakes[key] == w && !e.stopped
		if current {
			delete(e.wakes, key)
		}
		e.mu.Unlock()
		if current {
			e.notify(key)
		}
	})
	e.wakes[key] = w
}

// wake is a notification due at a time (notifyAtLocked).
type wake struct {
	at    time.Time
	timer clock.Timer
}

// Observed reports whether key's Lease is in this node's cache of Leases
// (its informer), whoever holds it.
func (e *Elector) Observed(key election.Key) bool {
	_, err := e.lister.Leases(key.Namespace).Get(key.Name)
	return err == nil
}

// Waiting is always false: a node-mode node writes a Service Lease only
// when ownership changes, so it has no per-Lease budget to be full of.
func (e *Elector) Waiting(election.Key) bool { return false }

// Resign ends the candidacy for key and releases its Lease if this node
// holds it. Withdraw the VIP first.
func (e *Elector) Resign(ctx context.Context, key election.Key) error {
	e.mu.Lock()
	c := e.cands[key]
	delete(e.cands, key)
	wasLeading := false
	if c != nil {
		stopTimer(c)
		wasLeading = c.held && c.confirmed
		c.held, c.confirmed = false, false
	}
	e.mu.Unlock()
	if c == nil {
		return nil
	}
	if wasLeading {
		e.notify(key)
	}
	return e.release(ctx, key)
}

// ResignAll resigns every key (graceful shutdown).
func (e *Elector) ResignAll(ctx context.Context) error {
	e.mu.Lock()
	keys := make([]election.Key, 0, len(e.cands))
	for k := range e.cands {
		keys = append(keys, k)
	}
	e.mu.Unlock()
	var errs []error
	for _, k := range keys {
		errs = append(errs, e.Resign(ctx, k))
	}
	return errors.Join(errs...)
}

// Mismatches returns the mismatch last reported per node.
func (e *Elector) Mismatches() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]string, len(e.reported))
	for k, v := range e.reported {
		out[k] = v
	}
	return out
}

func stopTimer(c *cand) {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
}

// after re-decides key at time at (replacing an earlier wake-up); mu held.
func (e *Elector) after(key election.Key, c *cand, at time.Time) {
	stopTimer(c)
	c.timer = e.clock.AfterFunc(at, func() { e.queue.Add(key) })
}

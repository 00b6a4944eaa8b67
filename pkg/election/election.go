package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
)

// Key names one Lease.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Annotations and labels vigil puts on the Leases it writes.
const (
	InstanceAnnotation = "vigil.io/instance"
	ManagedByLabel     = "app.kubernetes.io/managed-by"
	ManagedByValue     = "vigil"
	// ModeAnnotation says which election mode wrote a Lease; only the
	// node-heartbeat mode (ModeNode, pkg/heartbeat) sets it.
	ModeAnnotation = "vigil.io/election-mode"
	ModeNode       = "node"
)

// Config is the elector's own configuration.
type Config struct {
	Identity      string        // holder identity: the node name
	Instance      string        // unique per process start
	LeaseDuration time.Duration // default 5s
	RenewDeadline time.Duration // default 3s; must be < LeaseDuration
	RetryPeriod   time.Duration // default 1s; renew interval
	Namespace     string        // restrict the Lease informer ("" = all)
	Clock         clock.Clock   // time source; nil = clock.Real{}
	// Silent, when set, is asked before a Lease another controller held
	// (foreign.go) is taken: false while its old holder may still answer
	// for the key's addresses; the race asks again a RetryPeriod later.
	Silent func(ctx context.Context, key Key) bool
	// Opt-in spread and degradation (spread.go); zero values keep the
	// behaviour of plain first-writer-wins.
	RankDelay      time.Duration   // rendezvous rank delay for free Leases (0: none)
	Peers          func() []string // candidates ranked with the live holders (e.g. the eligible Nodes); nil: live holders only
	SpreadRenewals bool            // first renewal at a hashed point of the period
	MaxAcquiring   int             // acquisitions in flight at most, backing off after a failed or slow renewal (0: no limit)
	MaxHeld        int             // Leases held (and being acquired) at most (0: no limit)
	// Full, when set, is called (quickly: under the elector's lock) when
	// this node becomes full under MaxHeld and when it has room again.
	Full func(full bool)
	// Keeper, when set, is the LAN liveness (pkg/members): a holder keeps
	// a Lease past its renew deadline while the Keeper vouches for it, and
	// no acquisition is written unless it says this node reaches the API
	// server, in the epoch the decision was made in (keep.go).
	Keeper Keeper
	// Kept, when set, is called when a Lease kept without the API server
	// is renewed again (the API is back), with how long it was kept.
	Kept func(key Key, held time.Duration)
}

func (c *Config) defaults() error {
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 5 * time.Second
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = 3 * time.Second
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	switch {
	case c.Identity == "":
		return errors.New("election: empty identity")
	case c.Instance == "":
		return errors.New("election: empty instance id")
	case c.RenewDeadline >= c.LeaseDuration:
		return fmt.Errorf("election: renew deadline %v must be shorter than lease duration %v", c.RenewDeadline, c.LeaseDuration)
	case c.RetryPeriod >= c.RenewDeadline:
		return fmt.Errorf("election: retry period %v must be shorter than renew deadline %v", c.RetryPeriod, c.RenewDeadline)
	case c.Keeper != nil && c.Keeper.Fresh() >= c.RenewDeadline:
		return fmt.Errorf("election: LAN report freshness %v must be shorter than renew deadline %v", c.Keeper.Fresh(), c.RenewDeadline)
	}
	return nil
}

// Term is this node's current hold of a Lease.
type Term struct {
	Deadline time.Time // last accepted send + RenewDeadline: stop announcing by then unless renewed
	Expiry   time.Time // last accepted send + LeaseDuration: no follower may take over before then
}

// phase is where the elector is in its life: races start only while
// running.
type phase int

const (
	idle    phase = iota // before Run, or Run waiting for the Lease cache
	running              // Run's cache has synced
	stopped              // Run returned
)

// Elector runs this node's side of every Lease election it is asked to join.
type Elector struct {
	cfg    Config
	clock  clock.Clock
	client Client
	notify func(Key)
	log    *slog.Logger

	informers kubeclient.Informers
	lister    coordinationlisters.LeaseLister
	synced    cache.InformerSynced

	mu       sync.Mutex
	phase    phase
	ctx      context.Context // Run's context, set when Run starts; races derive from it
	races    map[Key]*race   // candidacies; queued (not started) until running
	observed map[Key]observation
	// expiries fire when a Lease held by someone else would expire by our
	// own observation, so callers waiting on it (e.g. Services sharing an
	// address) re-evaluate without polling.
	expiries map[Key]clock.Timer

	// spread.go
	peers       []string
	holders     map[string]time.Time // the live holders among peers: since when
	peersAt     time.Time
	acquiring   int
	renewFailed time.Time           // the last failed or slow renewal's answer
	held        int                 // races held
	waiting     map[*race]time.Time // races waiting for room under MaxHeld: from when to tell (Waiting)
	full        bool
}

// race is this node's candidacy for one key.
type race struct {
	key Key
	run *runner // steps the race (runner.go); started with Run

	// Owned by the race's steps (and Resign after it stopped).
	lease    *coordinationv1.Lease // our last accepted write
	lastSent time.Time             // send time of our last accepted write
	// foreign is the Lease of this name another controller wrote, read by
	// GET since the informer does not show it (nil: none; foreign.go).
	foreign *coordinationv1.Lease
	heard   bool      // the foreign holder's addresses were heard (logged once)
	renewAt time.Time // when to renew next
	freeAt  time.Time // when this race first saw the Lease free (zero: held by another)
	epoch   uint64    // the Keeper's epoch when the current step began

	// Guarded by Elector.mu.
	held      bool // we believe the Lease is ours (last write accepted, deadline not passed)
	confirmed bool // the informer has shown our holding record
	term      Term
	kept      time.Time   // when the hold started being kept without the API (zero: it is not)
	tell      clock.Timer // notifies its key when its wait for room may be told (spread.go; nil: none since it last acquired)
	stepDown  clock.Timer // fires at term.Deadline
	// conflict is the resourceVersion of the record ("" = none) a write of
	// ours lost a 409 on: nothing is written over that record again; the
	// race waits for the informer to show the winner.
	conflict *string
}

// Client is what the elector needs of the API: Leases. A
// *kubeclient.Clientset is one.
type Client interface {
	Leases(namespace string) kubeclient.Leases
}

// New returns an elector. client should have its own QPS budget so status
// writes never starve renewals. notify is called (from elector goroutines)
// whenever this node's leadership of a key changes or another holder
// appears, is released or disappears; it must only enqueue.
//
// Campaign may be called at once: candidacies made before Run start when
// Run's Lease cache has synced.
func New(cfg Config, client Client, notify func(Key), log *slog.Logger) (*Elector, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	e := &Elector{
		cfg: cfg, clock: cfg.Clock, client: client, notify: notify, log: log,
		races: map[Key]*race{}, observed: map[Key]observation{}, expiries: map[Key]clock.Timer{},
		waiting: map[*race]time.Time{},
	}
	inf, err := LeaseCache(client, cfg.Namespace, cfg.RetryPeriod, cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { e.observe(obj, false) },
		UpdateFunc: func(_, obj any) { e.observe(obj, false) },
		DeleteFunc: func(obj any) { e.observe(obj, true) },
	})
	if err != nil {
		return nil, fmt.Errorf("election: lease cache: %w", err)
	}
	e.lister, e.synced = coordinationlisters.NewLeaseLister(inf.GetIndexer()), inf.HasSynced
	e.informers.Add(inf)
	return e, nil
}

// dropManagedFields keeps managedFields out of the Lease cache (never read;
// a write built from a cached Lease leaves the server's as they are).
func dropManagedFields(obj any) (any, error) {
	if l, ok := obj.(*coordinationv1.Lease); ok {
		l.ManagedFields = nil
	}
	return obj, nil
}

// LeaseCache is a cache, not started, of vigil's Leases (labelled
// ManagedByLabel=ManagedByValue) in namespace ("": all), managedFields
// dropped, that retries a failed list or watch every retry (the retry
// period of the elections it serves: a holder leads only once this cache
// shows its write, so it must come back with the API server, not up to a
// minute later as a shared informer's backoff lets it); h sees every
// change.
func LeaseCache(client Client, namespace string, retry time.Duration, h cache.ResourceEventHandler) (*kubeclient.PromptCache, error) {
	return kubeclient.NewPromptCache(client.Leases(namespace), client, &coordinationv1.Lease{}, kubeclient.PromptOptions{
		InformerOptions: kubeclient.InformerOptions{
			Tweak: func(o *metav1.ListOptions) {
				o.LabelSelector = labels.Set{ManagedByLabel: ManagedByValue}.String()
			},
			Transform: dropManagedFields,
		},
		Retry:   retry,
		Handler: h,
	})
}

// Config returns the configuration in use, defaults filled in: callers
// derive timings from it (e.g. address lifetimes from RenewDeadline).
func (e *Elector) Config() Config { return e.cfg }

// Run starts the Lease informer, then every candidacy (queued or new), and
// blocks until ctx ends; it returns nil then. Races stop with ctx without releasing their
// Leases: call ResignAll first for a graceful shutdown. Run may be called
// once.
func (e *Elector) Run(ctx context.Context) error {
	if err := e.begin(ctx); err != nil {
		return err
	}
	e.informers.Start(ctx.Done())
	defer e.informers.Shutdown()
	defer e.stopAll() // races first, then the informer
	if cache.WaitForCacheSync(ctx.Done(), e.synced) {
		e.startQueued()
	}
	<-ctx.Done()
	return nil
}

func (e *Elector) begin(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx != nil {
		return errors.New("election: Run called more than once")
	}
	e.ctx = ctx
	return nil
}

// startQueued starts the races campaigned for before the cache synced.
func (e *Elector) startQueued() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx.Err() != nil {
		return
	}
	e.phase = running
	for _, r := range e.races {
		e.startLocked(r)
	}
}

// startLocked starts r's steps; mu must be held and the elector running.
func (e *Elector) startLocked(r *race) {
	r.run.start(e.ctx)
}

// stopAll ends every race when Run returns; later Campaigns do nothing.
func (e *Elector) stopAll() {
	e.mu.Lock()
	e.phase = stopped
	races := e.races
	e.races = map[Key]*race{}
	for k, t := range e.expiries {
		t.Stop()
		delete(e.expiries, k)
	}
	e.mu.Unlock()
	for _, r := range races {
		e.stopRace(r)
	}
}

// stopRace stops r's steps (waiting for one in progress) and drops its
// hold; r must already be out of e.races. It reports whether r held its
// Lease.
func (e *Elector) stopRace(r *race) (wasHeld bool) {
	if !r.run.stop() {
		return false // queued, never started
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	wasHeld = r.held
	e.setLeading(r, false, Term{})
	delete(e.waiting, r)
	e.stopTellLocked(r)
	return wasHeld
}

// HasSynced reports whether the Lease cache is filled.
func (e *Elector) HasSynced() bool { return e.synced() }

// Leading reports whether this node holds key right now: its last renewal
// was sent less than RenewDeadline ago, was accepted, and the informer has
// shown it.
func (e *Elector) Leading(key Key) bool {
	_, ok := e.Term(key)
	return ok
}

// Term returns this node's current hold of key; ok only while Leading(key).
func (e *Elector) Term(key Key) (t Term, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.races[key]
	if r == nil || !r.held || !r.confirmed {
		return Term{}, false
	}
	t = e.vouchedLocked(r.term)
	if !e.clock.Now().Before(t.Deadline) {
		return Term{}, false
	}
	return t, true
}

// HeldByOther reports whether, as far as this node has seen, someone else (or
// a previous life of this agent) holds key and the hold has not expired.
func (e *Elector) HeldByOther(key Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	o, ok := e.observed[key]
	return ok && valid(e.asSeen(o), e.clock.Now()) && !e.mine(o)
}

// Observed reports whether key's Lease is in this node's cache of Leases
// (its informer), whoever holds it.
func (e *Elector) Observed(key Key) bool {
	_, err := e.lister.Leases(key.Namespace).Get(key.Name)
	return err == nil
}

// Campaign makes this node a candidate for key. It is idempotent. Before
// Run (or while Run waits for its cache) the candidacy is queued and starts
// with Run; after Run returned it does nothing.
func (e *Elector) Campaign(key Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.phase == stopped {
		return
	}
	if _, ok := e.races[key]; ok {
		return
	}
	r := &race{key: key}
	r.run = newRunner(e.clock, func(ctx context.Context) time.Time { return e.step(ctx, r) })
	e.races[key] = r
	if e.phase == running {
		e.startLocked(r)
	}
}

// Campaigning reports whether this node is a candidate for key.
func (e *Elector) Campaigning(key Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.races[key]
	return ok
}

// Resign ends the candidacy for key and, if this node holds the Lease,
// releases it so a follower takes over at once. Withdraw the VIP before
// calling it.
func (e *Elector) Resign(ctx context.Context, key Key) error {
	e.mu.Lock()
	r, ok := e.races[key]
	delete(e.races, key)
	e.mu.Unlock()
	if !ok {
		return nil
	}
	if e.stopRace(r) {
		e.notify(key)
	}
	if r.lease == nil {
		return nil
	}
	return e.release(ctx, key, r.lease)
}

// ResignAll resigns every key (graceful shutdown).
func (e *Elector) ResignAll(ctx context.Context) error {
	e.mu.Lock()
	keys := make([]Key, 0, len(e.races))
	for k := range e.races {
		keys = append(keys, k)
	}
	e.mu.Unlock()
	var errs []error
	for _, k := range keys {
		errs = append(errs, e.Resign(ctx, k))
	}
	return errors.Join(errs...)
}

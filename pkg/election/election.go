package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"
)

// Key names one Lease.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Annotations and labels vigil puts on the Leases it writes.
const (
	InstanceAnnotation = "vigil.io/instance"
	ManagedByLabel     = "app.kubernetes.io/managed-by"
	ManagedByValue     = "vigil"
)

// Config is the elector's own configuration.
type Config struct {
	Identity      string        // holder identity: the node name
	Instance      string        // unique per process start
	LeaseDuration time.Duration // default 5s
	RenewDeadline time.Duration // default 3s; must be < LeaseDuration
	RetryPeriod   time.Duration // default 1s; renew interval
	Namespace     string        // restrict the Lease informer ("" = all)
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
	switch {
	case c.Identity == "":
		return errors.New("election: empty identity")
	case c.Instance == "":
		return errors.New("election: empty instance id")
	case c.RenewDeadline >= c.LeaseDuration:
		return fmt.Errorf("election: renew deadline %v must be shorter than lease duration %v", c.RenewDeadline, c.LeaseDuration)
	case c.RetryPeriod >= c.RenewDeadline:
		return fmt.Errorf("election: retry period %v must be shorter than renew deadline %v", c.RetryPeriod, c.RenewDeadline)
	}
	return nil
}

// Elector runs this node's side of every Lease election it is asked to join.
type Elector struct {
	cfg    Config
	client kubernetes.Interface
	notify func(Key)
	log    *slog.Logger
	now    func() time.Time

	factory informers.SharedInformerFactory
	lister  coordinationlisters.LeaseLister
	synced  cache.InformerSynced

	mu       sync.Mutex
	ctx      context.Context // Run's context; races derive from it
	races    map[Key]*race
	observed map[Key]observation
	// expiries fire when a Lease held by someone else would expire by our
	// own observation, so callers waiting on it (e.g. Services sharing an
	// address) re-evaluate without polling.
	expiries map[Key]*time.Timer
}

// observation is when this node last saw a Lease record change, by its own
// clock.
type observation struct {
	holder, instance string
	renew            time.Time
	transitions      int32
	duration         time.Duration
	at               time.Time
}

func (o observation) sameRecord(p observation) bool {
	return o.holder == p.holder && o.instance == p.instance && o.renew.Equal(p.renew) && o.transitions == p.transitions
}

// race is this node's candidacy for one key.
type race struct {
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{}

	// Owned by the race goroutine (and Resign after it stopped).
	lease    *coordinationv1.Lease // our last successful write
	lastSent time.Time             // send time of our last accepted write

	// Guarded by Elector.mu.
	held      bool // we believe the Lease is ours (last write accepted, deadline not passed)
	confirmed bool // the informer has shown our holding record
	deadline  time.Time
	expiry    *time.Timer
}

// New returns an elector. client should have its own QPS budget so status
// writes never starve renewals. notify is called (from elector goroutines)
// whenever this node's leadership of a key changes or another holder
// appears, is released or disappears; it must only enqueue.
func New(cfg Config, client kubernetes.Interface, notify func(Key), log *slog.Logger) (*Elector, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	opts := []informers.SharedInformerOption{
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{ManagedByLabel: ManagedByValue}.String()
		}),
	}
	if cfg.Namespace != "" {
		opts = append(opts, informers.WithNamespace(cfg.Namespace))
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, opts...)
	inf := f.Coordination().V1().Leases()
	e := &Elector{
		cfg: cfg, client: client, notify: notify, log: log, now: time.Now,
		factory: f, lister: inf.Lister(), synced: inf.Informer().HasSynced,
		races: map[Key]*race{}, observed: map[Key]observation{}, expiries: map[Key]*time.Timer{},
	}
	_, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { e.observe(obj, false) },
		UpdateFunc: func(_, obj any) { e.observe(obj, false) },
		DeleteFunc: func(obj any) { e.observe(obj, true) },
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Run starts the Lease informer and blocks until ctx ends. Races stop with
// ctx without releasing their Leases: call ResignAll first for a graceful
// shutdown.
func (e *Elector) Run(ctx context.Context) error {
	e.mu.Lock()
	e.ctx = ctx
	e.mu.Unlock()
	e.factory.Start(ctx.Done())
	defer e.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), e.synced) {
		return ctx.Err()
	}
	<-ctx.Done()
	e.mu.Lock()
	races := e.races
	e.races = map[Key]*race{}
	for k, t := range e.expiries {
		t.Stop()
		delete(e.expiries, k)
	}
	e.mu.Unlock()
	for k, r := range races {
		r.cancel()
		<-r.done
		e.mu.Lock()
		e.setLeading(k, r, false, time.Time{})
		e.mu.Unlock()
	}
	return nil
}

// HasSynced reports whether the Lease cache is filled.
func (e *Elector) HasSynced() bool { return e.synced() }

func toLease(obj any) (*coordinationv1.Lease, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	l, ok := obj.(*coordinationv1.Lease)
	return l, ok
}

func observe(l *coordinationv1.Lease, at time.Time) observation {
	o := observation{instance: l.Annotations[InstanceAnnotation], at: at}
	if l.Spec.HolderIdentity != nil {
		o.holder = *l.Spec.HolderIdentity
	}
	if l.Spec.RenewTime != nil {
		o.renew = l.Spec.RenewTime.Time
	}
	if l.Spec.LeaseTransitions != nil {
		o.transitions = *l.Spec.LeaseTransitions
	}
	if l.Spec.LeaseDurationSeconds != nil {
		o.duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return o
}

// observe records a Lease change seen through the informer and wakes the
// race for it.
func (e *Elector) observe(obj any, deleted bool) {
	l, ok := toLease(obj)
	if !ok {
		return
	}
	key := Key{l.Namespace, l.Name}
	now := e.now()
	e.mu.Lock()
	prev, had := e.observed[key]
	holderChanged := true
	if t := e.expiries[key]; t != nil {
		t.Stop()
		delete(e.expiries, key)
	}
	if deleted {
		delete(e.observed, key)
	} else {
		o := observe(l, now)
		if had && o.sameRecord(prev) {
			o.at = prev.at // unchanged record: keep the first sighting
		}
		holderChanged = !had || prev.holder != o.holder || prev.instance != o.instance
		e.observed[key] = o
		if o.holder != "" && !e.mine(o) && e.ctx != nil && e.ctx.Err() == nil {
			e.expiries[key] = time.AfterFunc(o.at.Add(o.duration).Sub(now)+time.Millisecond, func() { e.expired(key, o) })
		}
	}
	r := e.races[key]
	e.mu.Unlock()
	if r != nil {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	if holderChanged {
		e.notify(key)
	}
}

// expired notifies that o, still the latest record of key, has run out.
func (e *Elector) expired(key Key, o observation) {
	e.mu.Lock()
	cur, ok := e.observed[key]
	still := ok && cur.sameRecord(o) && cur.at.Equal(o.at) && e.ctx != nil && e.ctx.Err() == nil
	if still {
		delete(e.expiries, key)
	}
	e.mu.Unlock()
	if still {
		e.notify(key)
	}
}

func (e *Elector) mine(o observation) bool {
	return o.holder == e.cfg.Identity && o.instance == e.cfg.Instance
}

// valid reports whether o names a live holder at time now.
func valid(o observation, now time.Time) bool {
	return o.holder != "" && now.Before(o.at.Add(o.duration))
}

// Leading reports whether this node holds key right now: its last renewal
// was accepted less than RenewDeadline ago and the informer has shown it.
func (e *Elector) Leading(key Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.races[key]
	return r != nil && r.held && r.confirmed && e.now().Before(r.deadline)
}

// HeldByOther reports whether, as far as this node has seen, someone else (or
// a previous life of this agent) holds key and the hold has not expired.
func (e *Elector) HeldByOther(key Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	o, ok := e.observed[key]
	return ok && valid(o, e.now()) && !e.mine(o)
}

// Campaign makes this node a candidate for key. It is idempotent.
func (e *Elector) Campaign(key Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx == nil || e.ctx.Err() != nil {
		return
	}
	if _, ok := e.races[key]; ok {
		return
	}
	ctx, cancel := context.WithCancel(e.ctx)
	r := &race{cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{})}
	e.races[key] = r
	go e.run(ctx, key, r)
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
	r.cancel()
	<-r.done
	e.mu.Lock()
	wasHeld := r.held
	e.setLeading(key, r, false, time.Time{})
	e.mu.Unlock()
	if wasHeld {
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

// release writes holder "" if the Lease is still ours.
func (e *Elector) release(ctx context.Context, key Key, last *coordinationv1.Lease) error {
	l := last.DeepCopy()
	for attempt := 0; attempt < 2; attempt++ {
		if h := l.Spec.HolderIdentity; h == nil || *h != e.cfg.Identity || l.Annotations[InstanceAnnotation] != e.cfg.Instance {
			return nil // not ours any more
		}
		empty := ""
		one := int32(1)
		now := metav1.NewMicroTime(e.now())
		l.Spec.HolderIdentity = &empty
		l.Spec.LeaseDurationSeconds = &one
		l.Spec.RenewTime = &now
		delete(l.Annotations, InstanceAnnotation)
		_, err := e.client.CoordinationV1().Leases(key.Namespace).Update(ctx, l, metav1.UpdateOptions{})
		switch {
		case err == nil:
			e.log.Info("released lease", "lease", key.String())
			return nil
		case apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err):
			if l, err = e.client.CoordinationV1().Leases(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{}); err != nil {
				return fmt.Errorf("release %s: %w", key, err)
			}
		default:
			return fmt.Errorf("release %s: %w", key, err)
		}
	}
	return fmt.Errorf("release %s: conflicting writers", key)
}

// setLeading updates r's holding state; mu must be held. A held race gets an
// expiry timer at its deadline that drops leadership and notifies.
func (e *Elector) setLeading(key Key, r *race, held bool, deadline time.Time) {
	if r.expiry != nil {
		r.expiry.Stop()
		r.expiry = nil
	}
	r.held = held
	r.deadline = deadline
	if !held {
		r.confirmed = false
		return
	}
	r.expiry = time.AfterFunc(deadline.Sub(e.now()), func() {
		e.mu.Lock()
		lost := r.held && !e.now().Before(r.deadline)
		if lost {
			r.held, r.confirmed = false, false
		}
		e.mu.Unlock()
		if lost {
			e.log.Warn("lease not renewed in time, stepping down", "lease", key.String())
			e.notify(key)
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
	})
}

// run is the race goroutine for one key.
func (e *Elector) run(ctx context.Context, key Key, r *race) {
	defer close(r.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-timer.C:
		}
		next := e.step(ctx, key, r)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// step does one round of the race and returns when to look again (a wake
// from the informer may come sooner).
func (e *Elector) step(ctx context.Context, key Key, r *race) time.Duration {
	now := e.now()
	cached, err := e.lister.Leases(key.Namespace).Get(key.Name)
	if err != nil && !apierrors.IsNotFound(err) {
		return e.cfg.RetryPeriod
	}
	e.mu.Lock()
	held := r.held
	confirmedBefore := r.confirmed
	obs, seen := e.observed[key]
	if cached != nil {
		// The lister is updated before the event handlers run: a record in
		// the cache that has not been observed yet is a fresh sighting, as
		// of now — never an expired one. (The handler records it.)
		if o := observe(cached, now); !seen || !o.sameRecord(obs) {
			obs, seen = o, true
		}
	}
	// Leading starts only once the informer shows our own write: then this
	// node's cache has every Lease write that came before it, which is what
	// lets callers compare holders of related keys safely.
	confirm := held && !r.confirmed && cached != nil && r.lease != nil && cached.ResourceVersion == r.lease.ResourceVersion
	if confirm {
		r.confirmed = true
	}
	e.mu.Unlock()
	if confirm {
		e.log.Info("leading", "lease", key.String())
		e.notify(key)
	}

	if held {
		if cached == nil {
			if confirmedBefore {
				// Deleted by someone else: stop at once.
				e.lose(key, r, "lease deleted")
				return 0
			}
			// Our create has not reached the informer yet.
			return e.cfg.RetryPeriod
		}
		if seen && !e.mine(obs) && obs.renew.After(r.lastSent) {
			e.lose(key, r, "lease taken by "+obs.holder)
			return 0
		}
		due := r.lastSent.Add(e.cfg.RetryPeriod)
		if now.Before(due) {
			return due.Sub(now)
		}
		e.write(ctx, key, r, r.lease, false)
		return e.cfg.RetryPeriod
	}

	switch {
	case cached == nil:
		e.write(ctx, key, r, nil, true)
		return e.cfg.RetryPeriod
	case !seen || !valid(obs, now) || e.mine(obs):
		e.write(ctx, key, r, cached, true)
		return e.cfg.RetryPeriod
	default:
		// Held by someone else: look again when it would expire.
		return obs.at.Add(obs.duration).Sub(now) + time.Millisecond
	}
}

func (e *Elector) lose(key Key, r *race, why string) {
	e.mu.Lock()
	e.setLeading(key, r, false, time.Time{})
	e.mu.Unlock()
	r.lease = nil
	e.log.Info("lost lease", "lease", key.String(), "reason", why)
	e.notify(key)
}

// write creates, acquires or renews the Lease. base is the record to update
// (nil: create).
func (e *Elector) write(ctx context.Context, key Key, r *race, base *coordinationv1.Lease, acquire bool) {
	sent := e.now()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	micro := metav1.NewMicroTime(sent)
	dur := int32(e.cfg.LeaseDuration / time.Second)
	if dur < 1 {
		dur = 1
	}
	var l *coordinationv1.Lease
	if base == nil {
		zero := int32(0)
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace},
			Spec:       coordinationv1.LeaseSpec{AcquireTime: &micro, LeaseTransitions: &zero},
		}
	} else {
		l = base.DeepCopy()
	}
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Labels[ManagedByLabel] = ManagedByValue
	prevHolder := ""
	if l.Spec.HolderIdentity != nil {
		prevHolder = *l.Spec.HolderIdentity
	}
	if acquire && base != nil && (prevHolder != e.cfg.Identity || l.Annotations[InstanceAnnotation] != e.cfg.Instance) {
		t := int32(0)
		if l.Spec.LeaseTransitions != nil {
			t = *l.Spec.LeaseTransitions
		}
		if prevHolder != "" || t > 0 {
			t++
		}
		l.Spec.LeaseTransitions = &t
		l.Spec.AcquireTime = &micro
	}
	id := e.cfg.Identity
	l.Spec.HolderIdentity = &id
	l.Spec.LeaseDurationSeconds = &dur
	l.Spec.RenewTime = &micro
	l.Annotations[InstanceAnnotation] = e.cfg.Instance

	var out *coordinationv1.Lease
	var err error
	if base == nil {
		out, err = e.client.CoordinationV1().Leases(key.Namespace).Create(ctx, l, metav1.CreateOptions{})
	} else {
		out, err = e.client.CoordinationV1().Leases(key.Namespace).Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			if r.held {
				e.lose(key, r, "conflicting write")
			}
			return // the informer will show the winner's record
		}
		e.log.Warn("lease write failed", "lease", key.String(), "err", err)
		return // the expiry timer steps down at the deadline
	}
	r.lease, r.lastSent = out, sent
	e.mu.Lock()
	was := r.held
	confirmed := r.confirmed
	e.setLeading(key, r, true, sent.Add(e.cfg.RenewDeadline))
	r.confirmed = was && confirmed // a renewal keeps a confirmed term
	e.mu.Unlock()
	if !was {
		e.log.Info("acquired lease", "lease", key.String())
		select { // check the informer for our record right away
		case r.wake <- struct{}{}:
		default:
		}
	}
}

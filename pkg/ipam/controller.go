package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
)

// AnnotationAllocatedFrom records the pool an address came from.
const AnnotationAllocatedFrom = kube.AnnotationAllocatedFrom

// Config is the allocator's own configuration.
type Config struct {
	// Lease: one allocator at a time (identity POD_NAME, namespace
	// POD_NAMESPACE).
	LeaseName, LeaseNamespace string
	// Class decides which Services get an address: the same policy the
	// agents announce by, so no address is handed out that no agent
	// announces.
	Class kube.ClassPolicy
	// DiscoveryInterval is how often the allocator looks whether the
	// IPPool CRD is served (it is optional); 0 means 10s.
	DiscoveryInterval time.Duration
	// CampaignInterval is how often it checks that it is still a candidate
	// for its Lease; 0 means 5s.
	CampaignInterval time.Duration
	// Clock is the time source; nil means the real clock.
	Clock clock.Clock
	// OnPoolStats, if set, receives every pool's counts whenever the
	// leader writes pool status, and nil when this allocator stops leading.
	OnPoolStats func(map[string]allocator.PoolStats)
	// Sources are more pool sources (MetalLB's objects), after IPPools
	// and before kube-vip-cloud-provider's ConfigMap.
	Sources []PoolSource
}

func (c *Config) defaults() {
	if c.DiscoveryInterval <= 0 {
		c.DiscoveryInterval = 10 * time.Second
	}
	if c.CampaignInterval <= 0 {
		c.CampaignInterval = 5 * time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
}

// Elector is what the allocator needs of its election.
type Elector interface {
	Campaign(election.Key)
	Campaigning(election.Key) bool
	Leading(election.Key) bool
}

// control is work that is not one Service's: it has a queue of its own.
type control string

const (
	ctlLeading control = "leading" // leadership may have changed
	ctlPools   control = "pools"   // a pool source changed
	ctlStatus  control = "status"  // pool counts to write
)

// Controller allocates addresses while it leads.
type Controller struct {
	cfg      Config
	client   Client
	dyn      dynamic.Interface
	el       Elector
	recorder record.EventRecorder
	log      *slog.Logger
	models   *kube.Models

	infs     kubeclient.Informers
	services corelisters.ServiceLister
	nss      corelisters.NamespaceLister // for namespace selectors
	cms      corelisters.ConfigMapLister
	ippools  *ipPoolSource
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]  // Services
	control  workqueue.TypedRateLimitingInterface[control] // everything else

	// mu serializes the two workers; everything below is theirs.
	mu      sync.Mutex
	alloc   *allocator.Allocator               // nil while not leading
	pl      []allocator.Pool                   // the pools it was given
	shared  map[string]bool                    // namespaces allowed to share (ConfigMap)
	said    map[string]string                  // last Event per object, to say things once
	objects map[string]*corev1.ObjectReference // extra sources' pools: where each is defined
	waiting map[string]bool                    // Services that could not get an address
	// written remembers what this process wrote, until the informer shows
	// it: a rebuild from a lagging lister must not free those addresses.
	written map[string][]netip.Addr
}

// Client is what the controller reads and writes through the API, and
// asks discovery (a *kubeclient.Clientset).
type Client interface {
	Services(namespace string) kubeclient.Services
	Namespaces() kubeclient.Namespaces
	ConfigMaps(namespace string) kubeclient.ConfigMaps
	resourceDiscovery
}

// New wires the allocator controller.
func New(cfg Config, client Client, dyn dynamic.Interface, el Elector, recorder record.EventRecorder, log *slog.Logger) (*Controller, error) {
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	if recorder == nil {
		recorder = &record.FakeRecorder{}
	}
	c := &Controller{
		cfg: cfg, client: client, dyn: dyn, el: el, recorder: recorder, log: log.With("component", "allocator"),
		models:  kube.NewModels(cfg.Class),
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		control: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[control]()),
		shared:  map[string]bool{}, said: map[string]string{}, waiting: map[string]bool{}, written: map[string][]netip.Addr{},
	}
	c.ippools = newIPPoolSource(client, dyn, cfg.DiscoveryInterval, cfg.Clock, c.log, func() { c.control.Add(ctlPools) })
	if err := c.watch(); err != nil {
		return nil, fmt.Errorf("allocator: %w", err)
	}
	return c, nil
}

// watch registers the informers' handlers.
func (c *Controller) watch() error {
	svcInf, nsInf, cmInf, err := c.informers()
	if err != nil {
		return err
	}
	c.services = corelisters.NewServiceLister(svcInf.GetIndexer())
	c.nss = corelisters.NewNamespaceLister(nsInf.GetIndexer())
	c.cms = corelisters.NewConfigMapLister(cmInf.GetIndexer())
	c.synced = []cache.InformerSynced{svcInf.HasSynced, nsInf.HasSynced, cmInf.HasSynced}
	enqueue := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(k)
		}
	}
	if _, err := svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("watch Services: %w", err)
	}
	if _, err := nsInf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: c.namespaceAdded, UpdateFunc: c.namespaceUpdated,
	}); err != nil {
		return fmt.Errorf("watch Namespaces: %w", err)
	}
	poolsChanged := func(any) { c.control.Add(ctlPools) }
	if _, err := cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poolsChanged, UpdateFunc: func(_, o any) { poolsChanged(o) }, DeleteFunc: poolsChanged,
	}); err != nil {
		return fmt.Errorf("watch ConfigMap %s/%s: %w", ConfigMapNamespace, ConfigMapName, err)
	}
	return nil
}

// informers makes the Service and Namespace informers (slimmed) and the
// one of the pools ConfigMap, and adds them to c.infs.
func (c *Controller) informers() (svcInf, nsInf, cmInf cache.SharedIndexInformer, err error) {
	slim := kubeclient.InformerOptions{Transform: kube.Slim}
	if svcInf, err = kubeclient.NewInformer(c.client.Services(""), c.client, &corev1.Service{}, slim); err != nil {
		return nil, nil, nil, err
	}
	if nsInf, err = kubeclient.NewInformer(c.client.Namespaces(), c.client, &corev1.Namespace{}, slim); err != nil {
		return nil, nil, nil, err
	}
	cmInf, err = kubeclient.NewInformer(c.client.ConfigMaps(ConfigMapNamespace), c.client, &corev1.ConfigMap{}, kubeclient.InformerOptions{
		Tweak: func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ConfigMapName).String()
		},
	})
	if err != nil {
		return nil, nil, nil, err
	}
	for _, inf := range []cache.SharedIndexInformer{svcInf, nsInf, cmInf} {
		c.infs.Add(inf)
	}
	return svcInf, nsInf, cmInf, nil
}

func (c *Controller) leaseKey() election.Key {
	return election.Key{Namespace: c.cfg.LeaseNamespace, Name: c.cfg.LeaseName}
}

// LeaseChanged is the elector's notify hook.
func (c *Controller) LeaseChanged(k election.Key) {
	if k == c.leaseKey() {
		c.control.Add(ctlLeading)
	}
}

// HasSynced reports whether the caches are filled (the IPPool cache only
// while the CRD is served).
func (c *Controller) HasSynced() bool {
	for _, f := range c.synced {
		if !f() {
			return false
		}
	}
	return true
}

// Run campaigns for the allocator lease, once the caches are filled, and
// allocates while leading. It does not depend on the elector running
// first: it campaigns again whenever it finds itself not a candidate.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	defer c.control.ShutDown()
	c.infs.Start(ctx.Done())
	defer c.infs.Shutdown()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); c.ippools.run(ctx) }()
	if !cache.WaitForCacheSync(ctx.Done(), append(c.synced, c.ippools.settled, c.sourcesSynced)...) {
		return ctx.Err()
	}
	wg.Add(3)
	go func() { defer wg.Done(); c.keepCampaigning(ctx) }()
	go func() { defer wg.Done(); work(ctx, c, c.control, c.syncControl) }()
	go func() { defer wg.Done(); work(ctx, c, c.queue, c.syncService) }()
	<-ctx.Done()
	c.queue.ShutDown()
	c.control.ShutDown()
	return nil
}

// keepCampaigning makes this process a candidate for the allocator Lease
// now and whenever it finds it is not one (a Campaign before the elector
// ran, or a candidacy that ended).
func (c *Controller) keepCampaigning(ctx context.Context) {
	t := c.cfg.Clock.NewTimer()
	defer t.Stop()
	first := true
	for {
		if !c.el.Campaigning(c.leaseKey()) {
			if !first {
				c.log.Info("not a candidate for the allocator lease: campaigning again", "lease", c.leaseKey())
			}
			c.el.Campaign(c.leaseKey())
			c.control.Add(ctlLeading)
		}
		first = false
		t.Reset(c.cfg.Clock.Now().Add(c.cfg.CampaignInterval))
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// work runs one queue's items through sync, one at a time, under mu.
func work[T comparable](ctx context.Context, c *Controller, q workqueue.TypedRateLimitingInterface[T], sync func(context.Context, T) error) {
	for {
		item, quit := q.Get()
		if quit {
			return
		}
		c.mu.Lock()
		err := sync(ctx, item)
		c.mu.Unlock()
		switch {
		case err == nil:
			q.Forget(item)
		case ctx.Err() != nil:
		default:
			c.log.Warn("allocator sync failed, will retry", "key", item, "err", err)
			q.AddRateLimited(item)
		}
		q.Done(item)
	}
}

// syncControl handles leadership, pool and status work.
func (c *Controller) syncControl(ctx context.Context, item control) error {
	if !c.el.Leading(c.leaseKey()) {
		c.endTerm()
		return nil
	}
	if c.alloc == nil {
		// New term: rebuild everything from the Services themselves.
		c.log.Info("leading the allocator: rebuilding state from Services")
		return c.rebuild(ctx)
	}
	switch item {
	case ctlPools:
		return c.reloadPools(ctx)
	case ctlStatus:
		return c.writePoolStatus(ctx)
	}
	return nil
}

var errNotLeading = errors.New("not leading the allocator")

// endTerm drops the allocator state as soon as either worker sees the lease
// lost, so a lease lost and won back is always a new term (a rebuild from
// the Services, which another leader may have changed meanwhile).
func (c *Controller) endTerm() {
	if c.alloc != nil {
		c.log.Info("lost the allocator lease")
		c.poolStats(nil)
	}
	c.alloc = nil
}

// event records an Event on a Service, once per distinct message.
func (c *Controller) event(svc *corev1.Service, key, typ, reason, msg string) {
	if c.said[key] == reason+msg {
		return
	}
	c.said[key] = reason + msg
	c.log.Info("allocation", "service", key, "reason", reason, "message", msg)
	c.recorder.Event(svc, typ, reason, msg)
}

// leaseEvent records an Event on the allocator's Lease (things no single
// Service or pool is at fault for), once per distinct message and term.
func (c *Controller) leaseEvent(typ, reason, msg string) {
	key := "lease/" + reason
	if c.said[key] == msg {
		return
	}
	c.said[key] = msg
	ref := &corev1.ObjectReference{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: c.cfg.LeaseNamespace, Name: c.cfg.LeaseName}
	c.recorder.Event(ref, typ, reason, msg)
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/upnp"
	"github.com/vigil-lb/vigil/pkg/vip"
)

// Config is the agent's own configuration.
type Config struct {
	NodeName  string
	Namespace string // watch Services in this namespace only ("" = all)
	// PerService elects one Lease per Service (kubevip-<name> in the
	// Service's namespace); otherwise one Lease (LeaseNamespace/LeaseName)
	// decides for every Service.
	PerService     bool
	LeaseName      string
	LeaseNamespace string
	Class          kube.ClassFilter
}

// Elector is what the agent needs from the election.
type Elector interface {
	Campaign(election.Key)
	Campaigning(election.Key) bool
	Resign(context.Context, election.Key) error
	ResignAll(context.Context) error
	Leading(election.Key) bool
	HeldByOther(election.Key) bool
}

// Dataplane binds and announces VIPs on this node.
type Dataplane interface {
	Up(netip.Addr) error
	Down(netip.Addr) error
	Bound() []netip.Addr
	// EnsureDHCP keeps a DHCP lease for key on a macvlan and the leased
	// address up; StopDHCP withdraws it, releases the lease and removes the
	// macvlan.
	EnsureDHCP(key string, p vip.DHCPParams) (netip.Addr, bool, error)
	StopDHCP(key string) error
	DHCPKeys() []string
}

// PortMapper keeps UPnP port forwards on the gateway (pkg/upnp).
type PortMapper interface {
	Set(key string, local netip.Addr, want []upnp.Mapping)
	State(key string) upnp.State
	Draining(key string) bool
}

// Deps are what the agent works through. Metrics, Recorder and PortMapper
// are optional (no PortMapper: UPnP off).
type Deps struct {
	Client     kubernetes.Interface
	Elector    Elector
	Dataplane  Dataplane
	Metrics    Metrics
	Recorder   record.EventRecorder
	PortMapper PortMapper
}

// Metrics receives what the agent measures.
type Metrics interface {
	Reconciled(d time.Duration, err error)
	Leading(service string, leading bool)
	Announced(vips int)
}

// Agent reconciles LoadBalancer Services on this node.
type Agent struct {
	cfg      Config
	client   kubernetes.Interface
	elector  Elector
	dp       Dataplane
	metrics  Metrics
	recorder record.EventRecorder
	pm       PortMapper
	log      *slog.Logger

	factory      informers.SharedInformerFactory
	services     corelisters.ServiceLister
	svcIndex     cache.Indexer
	sliceIndex   cache.Indexer
	synced       []cache.InformerSynced
	queue        workqueue.TypedRateLimitingInterface[string]
	statusQueue  workqueue.TypedRateLimitingInterface[string]
	resyncPeriod time.Duration

	// What the reconcile worker concluded for each Service's status; the
	// status worker writes it, so an API that hangs never delays a
	// withdrawal.
	intentMu sync.Mutex
	intents  map[string]statusIntent

	// Worker-owned state (only sync and shutdown touch it).
	addrs      map[string][]netip.Addr // service key -> addresses it actively asks for
	leadable   map[string]bool         // service key -> this node campaigns for it
	announcing map[string]bool         // service key -> this node announces it
	warned     map[string]string       // service key -> last warning sent
	dhcpUp     map[string]netip.Addr   // service key -> DHCP address up here
	upnpLocal  map[string]netip.Addr   // service key -> VIP its UPnP forwards point at
	upnpDrain  map[string]time.Time    // service key -> when its forwards started to be deleted
	upnpSaid   map[string]string       // service key -> last UPnP event sent

	shutdownOnce sync.Once
}

const (
	indexByVIP     = "vip"
	indexByService = "service"
	leasePrefix    = "kubevip-"
	// ConditionAnnounced is the Service condition vigil maintains.
	ConditionAnnounced = "vigil.io/Announced"
)

// New wires an agent. recorder may be nil (no Events).
func New(cfg Config, d Deps, log *slog.Logger) (*Agent, error) {
	client, el, dp, m, recorder := d.Client, d.Elector, d.Dataplane, d.Metrics, d.Recorder
	if cfg.NodeName == "" {
		return nil, errors.New("agent: node name is required")
	}
	if !cfg.PerService && (cfg.LeaseName == "" || cfg.LeaseNamespace == "") {
		return nil, errors.New("agent: a shared lease needs a name and a namespace")
	}
	if log == nil {
		log = slog.Default()
	}
	if recorder == nil {
		recorder = &record.FakeRecorder{}
	}
	var opts []informers.SharedInformerOption
	if cfg.Namespace != "" {
		opts = append(opts, informers.WithNamespace(cfg.Namespace))
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, opts...)
	svcInf := f.Core().V1().Services().Informer()
	sliceInf := f.Discovery().V1().EndpointSlices().Informer()
	a := &Agent{
		cfg: cfg, client: client, elector: el, dp: dp, metrics: m, recorder: recorder, pm: d.PortMapper,
		log:     log,
		factory: f, services: f.Core().V1().Services().Lister(),
		svcIndex: svcInf.GetIndexer(), sliceIndex: sliceInf.GetIndexer(),
		synced:       []cache.InformerSynced{svcInf.HasSynced, sliceInf.HasSynced},
		queue:        workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		statusQueue:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		intents:      map[string]statusIntent{},
		resyncPeriod: 30 * time.Second,
		addrs:        map[string][]netip.Addr{}, leadable: map[string]bool{},
		announcing: map[string]bool{}, warned: map[string]string{}, dhcpUp: map[string]netip.Addr{},
		upnpLocal: map[string]netip.Addr{}, upnpDrain: map[string]time.Time{}, upnpSaid: map[string]string{},
	}
	if err := svcInf.AddIndexers(cache.Indexers{indexByVIP: vipIndex}); err != nil {
		return nil, err
	}
	if err := sliceInf.AddIndexers(cache.Indexers{indexByService: sliceServiceIndex}); err != nil {
		return nil, err
	}
	if _, err := svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.enqueueService(obj) },
		UpdateFunc: func(old, obj any) { a.enqueueService(old); a.enqueueService(obj) },
		DeleteFunc: func(obj any) { a.enqueueService(obj) },
	}); err != nil {
		return nil, err
	}
	if _, err := sliceInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.enqueueSlice,
		UpdateFunc: func(_, obj any) { a.enqueueSlice(obj) },
		DeleteFunc: a.enqueueSlice,
	}); err != nil {
		return nil, err
	}
	return a, nil
}

// vipIndex indexes Services by every address they ask for.
func vipIndex(obj any) ([]string, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil, nil
	}
	req, err := kube.Addresses(svc)
	if err != nil {
		return nil, nil
	}
	out := make([]string, 0, len(req.Addrs))
	for _, a := range req.Addrs {
		out = append(out, a.String())
	}
	return out, nil
}

func sliceServiceIndex(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[kube.ServiceNameLabel]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

func (a *Agent) enqueueService(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	a.queue.Add(svc.Namespace + "/" + svc.Name)
	// Services sharing an address decide together.
	if idx, err := vipIndex(svc); err == nil {
		for _, ip := range idx {
			a.enqueueUsers(ip)
		}
	}
}

func (a *Agent) enqueueUsers(ip string) {
	objs, _ := a.svcIndex.ByIndex(indexByVIP, ip)
	for _, o := range objs {
		if s, ok := o.(*corev1.Service); ok {
			a.queue.Add(s.Namespace + "/" + s.Name)
		}
	}
}

func (a *Agent) enqueueSlice(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if keys, _ := sliceServiceIndex(obj); len(keys) == 1 {
		a.queue.Add(keys[0])
	}
}

// HasSynced reports whether the agent's caches are filled.
func (a *Agent) HasSynced() bool {
	for _, f := range a.synced {
		if !f() {
			return false
		}
	}
	return true
}

// Enqueue asks for a sync of a Service (namespace/name); for DHCP and UPnP
// change hooks.
func (a *Agent) Enqueue(key string) { a.queue.Add(key) }

// LeaseChanged is the elector's notify hook: it only enqueues.
func (a *Agent) LeaseChanged(k election.Key) {
	if !a.cfg.PerService && k == a.sharedLease() {
		for _, key := range a.svcIndex.ListKeys() {
			a.queue.Add(key)
		}
		return
	}
	name, ok := strings.CutPrefix(k.Name, leasePrefix)
	if !ok {
		return
	}
	key := k.Namespace + "/" + name
	a.queue.Add(key)
	if obj, ok, _ := a.svcIndex.GetByKey(key); ok {
		a.enqueueService(obj)
	}
}

// LeaseName is the per-service Lease of a Service (kube-vip's naming).
func LeaseName(service string) string { return leasePrefix + service }

func (a *Agent) sharedLease() election.Key {
	return election.Key{Namespace: a.cfg.LeaseNamespace, Name: a.cfg.LeaseName}
}

func perServiceLease(serviceKey string) election.Key {
	ns, name, _ := strings.Cut(serviceKey, "/")
	return election.Key{Namespace: ns, Name: LeaseName(name)}
}

// leaseKey is the Lease deciding a Service: its own with per-service
// election, else the shared one — except for externalTrafficPolicy Local,
// which only a node with a local endpoint may announce, so it always gets
// its own.
func (a *Agent) leaseKey(serviceKey string) election.Key {
	if a.cfg.PerService {
		return perServiceLease(serviceKey)
	}
	if obj, ok, _ := a.svcIndex.GetByKey(serviceKey); ok {
		if svc, ok := obj.(*corev1.Service); ok && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			return perServiceLease(serviceKey)
		}
	}
	return a.sharedLease()
}

// Run starts the informers and the worker. When ctx ends it withdraws every
// VIP and only then resigns every lease, so no other node takes over while
// this one still answers for an address.
func (a *Agent) Run(ctx context.Context) error {
	defer a.queue.ShutDown()
	defer a.statusQueue.ShutDown()
	a.factory.Start(ctx.Done())
	defer a.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		return a.shutdown()
	}
	a.log.Info("agent started", "perServiceElection", a.cfg.PerService, "namespace", a.cfg.Namespace)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for a.processNext(ctx) {
		}
	}()
	go func() {
		defer wg.Done()
		for a.processStatus(ctx) {
		}
	}()
	// Level-triggered safety net: look at every Service now and then.
	resync := time.NewTicker(a.resyncPeriod)
	defer resync.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-resync.C:
			for _, k := range a.svcIndex.ListKeys() {
				a.queue.Add(k)
			}
		}
	}
	a.queue.ShutDown()
	a.statusQueue.ShutDown()
	wg.Wait()
	return a.shutdown()
}

func (a *Agent) shutdown() error {
	var errs []error
	a.shutdownOnce.Do(func() {
		for _, key := range a.dp.DHCPKeys() {
			if err := a.dp.StopDHCP(key); err != nil {
				errs = append(errs, err)
			}
		}
		for _, ip := range a.dp.Bound() {
			if err := a.dp.Down(ip); err != nil {
				errs = append(errs, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := a.elector.ResignAll(ctx); err != nil {
			errs = append(errs, err)
		}
		a.log.Info("agent stopped: VIPs withdrawn, leases released")
	})
	return errors.Join(errs...)
}

func (a *Agent) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	start := time.Now()
	err := a.sync(ctx, key)
	if a.metrics != nil {
		a.metrics.Reconciled(time.Since(start), err)
		a.metrics.Announced(len(a.dp.Bound()))
	}
	if err != nil {
		a.log.Warn("sync failed, will retry", "service", key, "err", err)
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	return true
}

// verdict is what this node concludes about one Service.
type verdict struct {
	handled bool         // ours: LoadBalancer, class, not ignored
	addrs   []netip.Addr // static VIPs
	dhcp    bool         // asks for an IPv4 address from DHCP (0.0.0.0)
	active  bool         // handled, valid, has addresses, no port collision
	reason  string       // why not active (condition reason)
	message string
	warning bool // the reason deserves a Warning Event
	here    bool // this node may announce it (endpoints)
	any     bool // some node may announce it
}

func (a *Agent) handled(svc *corev1.Service) bool {
	return svc != nil && svc.DeletionTimestamp == nil &&
		svc.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		a.cfg.Class.Handles(svc) && !kube.Ignored(svc) &&
		(a.cfg.Namespace == "" || svc.Namespace == a.cfg.Namespace)
}

func (a *Agent) evaluate(svc *corev1.Service) verdict {
	if !a.handled(svc) {
		return verdict{}
	}
	v := verdict{handled: true}
	req, err := kube.Addresses(svc)
	switch {
	case err != nil:
		v.reason, v.message, v.warning = "InvalidAddress", err.Error(), true
		return v
	case req.DHCP6:
		v.reason, v.message, v.warning = "DHCPUnsupported", "addresses from DHCPv6 (::) are not supported", true
		return v
	case req.DHCP4 && len(req.Addrs) > 0:
		v.reason, v.message, v.warning = "InvalidAddress", "0.0.0.0 (an address from DHCP) cannot be combined with static addresses", true
		return v
	case req.DHCP4:
		v.dhcp = true
	case len(req.Addrs) == 0:
		v.reason, v.message = "NoAddress", "no address requested (kube-vip.io/loadbalancerIPs or spec.loadBalancerIP)"
		return v
	}
	v.addrs = req.Addrs
	ports := kube.Ports(svc)
	for _, ip := range v.addrs {
		for _, o := range a.users(ip) {
			if o.UID == svc.UID || !a.handled(o) || !kube.Older(o, svc) {
				continue
			}
			if p, clash := kube.Collide(ports, kube.Ports(o)); clash {
				v.reason, v.warning = "PortCollision", true
				v.message = fmt.Sprintf("%d/%s on %s is already used by service %s/%s", p.Port, p.Protocol, ip, o.Namespace, o.Name)
				return v
			}
		}
	}
	slices := a.slicesOf(svc)
	v.active = true
	v.here = kube.Eligible(svc, slices, a.cfg.NodeName)
	v.any = kube.AnyEligible(svc, slices)
	if !v.any {
		v.reason, v.message = "NoEligibleNode", "no node has a ready endpoint"
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			v.message = "externalTrafficPolicy is Local and no node has a ready local endpoint"
		}
	}
	return v
}

// users returns the Services asking for ip.
func (a *Agent) users(ip netip.Addr) []*corev1.Service {
	objs, _ := a.svcIndex.ByIndex(indexByVIP, ip.String())
	out := make([]*corev1.Service, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*corev1.Service); ok {
			out = append(out, s)
		}
	}
	return out
}

func (a *Agent) slicesOf(svc *corev1.Service) []*discoveryv1.EndpointSlice {
	objs, _ := a.sliceIndex.ByIndex(indexByService, svc.Namespace+"/"+svc.Name)
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, s)
		}
	}
	return out
}

func (a *Agent) bound(ip netip.Addr) bool { return slices.Contains(a.dp.Bound(), ip) }

// otherHolds reports whether another node holds the lease of a Service
// (other than self) asking for ip.
func (a *Agent) otherHolds(ip netip.Addr, self string) bool {
	for _, o := range a.users(ip) {
		k := o.Namespace + "/" + o.Name
		if k != self && a.handled(o) && a.elector.HeldByOther(a.leaseKey(k)) {
			return true
		}
	}
	return false
}

// wantUp decides one address: some Service on it is led by this node, and
// either this node already announces it or no other node holds a Service on
// it. Of two nodes that acquire Services on one address at the same time,
// the later sees the earlier's lease before its own (the elector confirms
// leadership through the informer), so only one ever starts.
func (a *Agent) wantUp(ip netip.Addr) bool {
	led := false
	for k, addrs := range a.addrs {
		if a.leadable[k] && slices.Contains(addrs, ip) && a.elector.Leading(a.leaseKey(k)) {
			led = true
			break
		}
	}
	return led && (a.bound(ip) || !a.otherHolds(ip, ""))
}

func (a *Agent) sync(ctx context.Context, key string) error {
	ns, name, _ := strings.Cut(key, "/")
	svc, err := a.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		svc, err = nil, nil
	}
	if err != nil {
		return err
	}
	log := a.log.With("service", key)
	v := a.evaluate(svc)
	lk := a.leaseKey(key)

	// May this node lead the Service? It must be eligible, and on a shared
	// address it must not compete with the node already announcing it.
	leadable := v.active && v.here
	for _, ip := range v.addrs {
		if leadable && !a.bound(ip) && a.otherHolds(ip, key) {
			leadable = false
		}
	}
	// UPnP forwards no longer wanted are deleted from the VIP they point at
	// (secure gateways accept nothing else), so it stays up while they drain.
	forward := a.forwardUPnP(svc, v, leadable && a.elector.Leading(lk))
	a.stopUPnP(key, forward, lk)

	touched := append(slices.Clone(a.addrs[key]), v.addrs...)
	if v.active {
		a.addrs[key] = v.addrs
	} else if _, draining := a.upnpDrain[key]; !draining {
		delete(a.addrs, key)
	}
	if leadable {
		a.leadable[key] = true
		a.elector.Campaign(lk)
	} else {
		delete(a.leadable, key)
	}

	// Dataplane: withdraw before resigning, announce as soon as leading.
	var errs []error
	slices.SortFunc(touched, func(x, y netip.Addr) int { return x.Compare(y) })
	for _, ip := range slices.Compact(touched) {
		if a.wantUp(ip) || a.drainingUPnP(ip) {
			if err := a.dp.Up(ip); err != nil {
				errs = append(errs, err)
			}
		} else if err := a.dp.Down(ip); err != nil {
			errs = append(errs, err)
		}
	}
	leading := leadable && a.elector.Leading(lk)
	in := statusIntent{v: v, addrs: v.addrs, up: leading}
	for _, ip := range v.addrs {
		in.up = in.up && a.bound(ip)
	}
	if err := a.syncDHCP(log, svc, key, v, leading, &in); err != nil {
		errs = append(errs, err)
	}
	// Resign a Service's own Lease when it may not lead it any more, or no
	// longer uses it (shared-lease mode, no longer Local, or deleted). The
	// shared Lease is only released on shutdown.
	a.syncUPnP(svc, key, forward, &in)
	if own := perServiceLease(key); (!leadable || own != lk) && a.elector.Campaigning(own) && !a.isDraining(key) {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := a.elector.Resign(rctx, own); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}

	a.transition(log, svc, key, in.up, in.addrs)
	a.intentMu.Lock()
	if svc != nil {
		a.intents[key] = in
	} else {
		delete(a.intents, key)
	}
	a.intentMu.Unlock()
	if svc != nil {
		a.statusQueue.Add(key)
		a.warn(svc, key, v)
	} else {
		delete(a.warned, key)
		delete(a.upnpSaid, key)
	}
	return errors.Join(errs...)
}

// statusIntent is what a Service's status should say, as concluded by the
// last sync.
type statusIntent struct {
	v        verdict
	external netip.Addr   // the gateway's external address (UPnP)
	up       bool         // this node announces the Service
	addrs    []netip.Addr // what it announces (static or from DHCP)
	// DHCP: the MAC asked with, and whether the holder still waits for a
	// lease.
	mac     string
	pending bool
}

// processStatus is the status worker: it writes what sync concluded.
func (a *Agent) processStatus(ctx context.Context) bool {
	key, quit := a.statusQueue.Get()
	if quit {
		return false
	}
	defer a.statusQueue.Done(key)
	a.intentMu.Lock()
	in, ok := a.intents[key]
	a.intentMu.Unlock()
	ns, name, _ := strings.Cut(key, "/")
	svc, err := a.services.Services(ns).Get(name)
	if !ok || apierrors.IsNotFound(err) {
		a.statusQueue.Forget(key)
		return true
	}
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = a.writeStatus(wctx, svc, in)
		cancel()
	}
	if err != nil {
		lvl := slog.LevelWarn
		if apierrors.IsConflict(err) {
			// Usual when several nodes write the same "not announced"
			// status, or the Service changed meanwhile: the retry reads it
			// again.
			lvl = slog.LevelDebug
		}
		a.log.Log(ctx, lvl, "status write failed, will retry", "service", key, "err", err)
		a.statusQueue.AddRateLimited(key)
		return true
	}
	a.statusQueue.Forget(key)
	return true
}

// transition records and reports this node starting or stopping to announce
// a Service.
func (a *Agent) transition(log *slog.Logger, svc *corev1.Service, key string, up bool, addrs []netip.Addr) {
	if a.announcing[key] == up {
		return
	}
	if up {
		a.announcing[key] = true
		log.Info("announcing service")
		if svc != nil {
			a.recorder.Eventf(svc, corev1.EventTypeNormal, "VIPAcquired", "node %s announces %s", a.cfg.NodeName, joinAddrs(addrs))
		}
	} else {
		delete(a.announcing, key)
		log.Info("stopped announcing service")
		if svc != nil {
			a.recorder.Eventf(svc, corev1.EventTypeNormal, "VIPReleased", "node %s no longer announces the service", a.cfg.NodeName)
		}
	}
	if a.metrics != nil {
		a.metrics.Leading(key, up)
	}
}

func (a *Agent) warn(svc *corev1.Service, key string, v verdict) {
	if !v.warning {
		delete(a.warned, key)
		return
	}
	msg := v.reason + ": " + v.message
	if a.warned[key] == msg {
		return
	}
	a.warned[key] = msg
	a.recorder.Event(svc, corev1.EventTypeWarning, v.reason, v.message)
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// writeStatus makes the Service tell the truth. The announcing node writes
// the ingress, vipHost and a true condition; when no node can announce the
// Service, every node writes the same empty ingress and the reason (the
// writes are idempotent); otherwise the holder's word stands.
func (a *Agent) writeStatus(ctx context.Context, svc *corev1.Service, in statusIntent) error {
	v := in.v
	switch {
	case in.up:
		annos := map[string]string{kube.AnnotationVIPHost: a.cfg.NodeName}
		if v.dhcp && len(in.addrs) == 1 {
			annos[kube.AnnotationRequestedIP] = in.addrs[0].String()
			annos[kube.AnnotationHWAddr] = in.mac
		}
		ingress := ingressFor(svc, in.addrs)
		if in.external.IsValid() {
			ingress = append(ingress, ingressFor(svc, []netip.Addr{in.external})...)
		}
		return a.ensureStatus(ctx, svc, ingress, annos, metav1.Condition{
			Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Announced",
			Message: fmt.Sprintf("node %s announces %s", a.cfg.NodeName, joinAddrs(in.addrs)),
		})
	case in.pending:
		return a.ensureStatus(ctx, svc, nil, map[string]string{kube.AnnotationVIPHost: a.cfg.NodeName}, metav1.Condition{
			Type: ConditionAnnounced, Status: metav1.ConditionFalse, Reason: "DHCPPending",
			Message: fmt.Sprintf("node %s waits for a DHCP lease for MAC %s", a.cfg.NodeName, in.mac),
		})
	case !v.handled:
		// No longer ours (deleted type, ignore, other class): take back only
		// what vigil wrote — the ingress only if it announced the Service.
		wroteIngress := svc.Annotations[kube.AnnotationVIPHost] != ""
		if !wroteIngress && meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced) == nil {
			return nil
		}
		ingress := svc.Status.LoadBalancer.Ingress
		if wroteIngress {
			ingress = nil
		}
		return a.ensureStatus(ctx, svc, ingress, map[string]string{kube.AnnotationVIPHost: ""}, metav1.Condition{})
	case !v.active || !v.any:
		return a.ensureStatus(ctx, svc, nil, map[string]string{kube.AnnotationVIPHost: ""}, metav1.Condition{
			Type: ConditionAnnounced, Status: metav1.ConditionFalse, Reason: v.reason, Message: v.message,
		})
	}
	return nil
}

func ingressFor(svc *corev1.Service, addrs []netip.Addr) []corev1.LoadBalancerIngress {
	mode := corev1.LoadBalancerIPModeVIP
	var ports []corev1.PortStatus
	for _, p := range kube.Ports(svc) {
		ports = append(ports, corev1.PortStatus{Port: p.Port, Protocol: p.Protocol})
	}
	out := make([]corev1.LoadBalancerIngress, 0, len(addrs))
	for _, ip := range addrs {
		out = append(out, corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &mode, Ports: ports})
	}
	return out
}

// syncDHCP runs the DHCP side of a Service asking for 0.0.0.0: the leading
// node keeps a lease on a macvlan and its address up; every other node (and
// a Service that stopped asking, or is gone) has no macvlan and no client.
func (a *Agent) syncDHCP(log *slog.Logger, svc *corev1.Service, key string, v verdict, leading bool, in *statusIntent) error {
	had := slices.Contains(a.dp.DHCPKeys(), key)
	if !v.dhcp || !leading {
		delete(a.dhcpUp, key)
		if !had {
			return nil
		}
		log.Info("stopping DHCP for the service")
		return a.dp.StopDHCP(key)
	}
	p := vip.DHCPParams{MAC: kube.HardwareAddr(svc), Hostname: kube.Hostname(svc), RequestedIP: kube.RequestedIP(svc)}
	if prev, ok := a.dhcpUp[key]; ok {
		p.RequestedIP = prev
	}
	addr, ok, err := a.dp.EnsureDHCP(key, p)
	in.mac = p.MAC.String()
	prev, wasUp := a.dhcpUp[key]
	switch {
	case ok:
		in.addrs, in.up = []netip.Addr{addr}, true
		if !wasUp || prev != addr {
			a.recorder.Eventf(svc, corev1.EventTypeNormal, "DHCPAcquired", "node %s leased %s for MAC %s", a.cfg.NodeName, addr, p.MAC)
		}
		a.dhcpUp[key] = addr
	case wasUp:
		a.recorder.Eventf(svc, corev1.EventTypeWarning, "DHCPLeaseLost", "the DHCP lease for %s expired; %s withdrawn, still asking", p.MAC, prev)
		delete(a.dhcpUp, key)
		fallthrough
	default:
		in.up, in.addrs, in.pending = false, nil, true
	}
	return err
}

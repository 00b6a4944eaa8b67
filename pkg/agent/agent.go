package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/plan"
	"github.com/vigil-lb/vigil/pkg/svcsec"
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
	Class          kube.ClassPolicy
	// IgnoreNodeExclusion announces from this node even when its Node has
	// the node.kubernetes.io/exclude-from-external-load-balancers label or
	// a NetworkUnavailable condition (MetalLB's behaviour is to honour both).
	IgnoreNodeExclusion bool
	// AddrMargin is how long before the earliest takeover (the elector's
	// Term.Expiry) the kernel must have dropped an address by itself, should
	// this process stop; 0 means 1s.
	AddrMargin time.Duration
	// DHCPMode is dhcp_mode: the DHCP families a Service asking for
	// 0.0.0.0 leases (:: always leases DHCPv6); empty means IPv4.
	DHCPMode kube.DHCPMode
	Clock    clock.Clock // nil: the real clock
	// L2Off: addresses are not bound on the LAN interface nor announced by
	// ARP/NDP (kube-vip's BGP mode with vip_arp=false).
	L2Off bool
	// Routing: whether and how addresses are advertised by BGP (needs
	// Deps.Router).
	Routing plan.Routing
	// StatusLease names the Lease whose holder writes the status of
	// Services advertised by every eligible node (RoutingECMP), so the nodes
	// do not fight over it. Default: vigil-status in LeaseNamespace (or
	// kube-system).
	StatusLease election.Key
	// NoServiceUpdates: never write a Service's status or annotations
	// (kube-vip's disable_service_updates: another controller owns them).
	NoServiceUpdates bool
	// Endpoints reads v1 Endpoints instead of EndpointSlices (kube-vip's
	// enable_endpoints, for old clusters).
	Endpoints bool
	// NodeLabels labels this node service-provided.kube-vip.io/<name>.<ns>
	// while it announces a Service (kube-vip's enable_node_labeling).
	NodeLabels bool
	// ElectionOnDemand: with a shared Lease, Services annotated
	// kube-vip.io/forcePerServiceElection get their own
	// (per_service_election_on_demand).
	ElectionOnDemand bool
	// Preserve: an address this node stops announcing while its Service
	// still wants it stays on the node, silenced (Announcer.Preserve).
	Preserve bool
	// Rebalance, when positive, hands at most one Service over every
	// Rebalance to the node the election ranks first for it (needs
	// Deps.Successors; rebalance.go). Zero: off, no failback.
	Rebalance time.Duration
	// Presence, when named, is a Lease this node holds while it runs, so
	// the other nodes' electors see it alive even when it holds no
	// Service (per-Service mode with Rebalance; node mode has heartbeats).
	Presence election.Key
}

// Elector is what the agent needs from the election.
type Elector interface {
	Campaign(election.Key)
	Campaigning(election.Key) bool
	Resign(context.Context, election.Key) error
	ResignAll(context.Context) error
	Leading(election.Key) bool
	HeldByOther(election.Key) bool
	// Observed: the Lease is in the elector's cache, whoever holds it.
	Observed(election.Key) bool
	// Waiting: the Lease is free for this node but it holds as many as its
	// write budget renews (per-Service mode), and no other candidate took
	// it in the time it had; the key is notified when that becomes true.
	Waiting(election.Key) bool
	Term(election.Key) (election.Term, bool)
}

// LeaseJanitor deletes the Lease of a Service that is gone, once no node
// holds it (pkg/election.Janitor).
type LeaseJanitor interface {
	DeleteUnheld(context.Context, election.Key) error
}

// Announcer makes an address reachable through this node (L2: bind it and
// announce it with gratuitous ARP / unsolicited NDP). Up with a non-zero
// until must make sure the address disappears by until even if this
// process never runs again; Up is called again to extend it.
type Announcer interface {
	// UseInterface makes the next Up of addr bind it on interface name
	// ("auto": by subnet; "": the default), moving it if bound elsewhere.
	UseInterface(addr netip.Addr, name string)
	// UseVLAN makes the next Up of addr bind it on VLAN id of parent
	// ("": the default interface), creating the link if missing.
	UseVLAN(addr netip.Addr, parent string, id int) error
	Up(addr netip.Addr, until time.Time) error
	// Refresh is Up for many addresses at once (one read of the
	// interfaces): the errors by address.
	Refresh(until map[netip.Addr]time.Time) map[netip.Addr]error
	Down(addr netip.Addr) error
	// Bound lists the addresses up here (sorted); IsBound asks about one.
	Bound() []netip.Addr
	IsBound(addr netip.Addr) bool
	// Preserve stops announcing addr but may keep it on the node, never
	// answered by ARP (vip_preserve_on_leadership_loss); Preserved lists
	// those. Up takes one back, Down removes it.
	Preserve(addr netip.Addr) error
	Preserved() []netip.Addr
}

// Router advertises addresses to the BGP peers of this node (the routed
// dataplane: the address is local to the node but never answered by ARP).
// pool is the pool the address came from ("" unknown): it picks the
// route's attributes (communities, local preference).
type Router interface {
	Advertise(ctx context.Context, addr netip.Addr, pool string) error
	Withdraw(ctx context.Context, addr netip.Addr) error
	Advertised() []netip.Addr
	// Peers counts this node's BGP sessions that are established.
	Peers() int
	// Check repairs what someone else changed of the node's routing
	// state (the ARP guard); called on every resync.
	Check() error
}

// Policy says how the addresses of a pool leave the node (MetalLB's
// L2Advertisement / BGPAdvertisement objects). Without one every Service is
// announced by L2 (unless L2Off) and by BGP (with a Router).
type Policy interface {
	Modes(pool string) (l2, bgp bool)
	// Synced reports whether the policy has read its sources: the agent
	// announces nothing before (a pool would go out the wrong way).
	Synced() bool
}

// DHCP keeps addresses leased from DHCP on per-Service macvlans.
type DHCP interface {
	// EnsureDHCP keeps a DHCP lease for key on a macvlan and the leased
	// address up; StopDHCP withdraws it, releases the lease and removes the
	// macvlan.
	EnsureDHCP(key string, p vip.DHCPParams) ([]netip.Addr, error)
	StopDHCP(key string) error
	DHCPKeys() []string
}

// Dataplane is the node side: announcing addresses and leasing them.
type Dataplane interface {
	Announcer
	DHCP
	Foreign
}

// PortMapper keeps UPnP port forwards on the gateway (pkg/upnp).
type PortMapper interface {
	Set(key string, local netip.Addr, want []upnp.Mapping)
	State(key string) upnp.State
	Draining(key string) bool
	Drain(ctx context.Context, keys ...string) error
}

// Deps are what the agent works through. Metrics, Recorder and PortMapper
// are optional (no PortMapper: UPnP off).
type Deps struct {
	Client     Client
	Elector    Elector
	Dataplane  Dataplane
	Metrics    Metrics
	Recorder   record.EventRecorder
	PortMapper PortMapper
	Router     Router       // nil: no BGP
	Policy     Policy       // nil: every Service by every mode on
	Janitor    LeaseJanitor // nil: Leases of deleted Services stay
	Successors Successors   // nil: no rebalancing
	Firewall   Firewall     // nil: no enable_service_security
	// Names gives the addresses of a host name in
	// kube-vip.io/loadbalancerIPs, as last resolved, without blocking
	// (nil: names are not resolved); call NameChanged when they change.
	Names func(name string) []netip.Addr
}

// Client is what the agent reads and writes through the API (a
// *kubeclient.Clientset).
type Client interface {
	Services(namespace string) kubeclient.Services
	Nodes() kubeclient.Nodes
	Endpoints(namespace string) kubeclient.Endpoints
	EndpointSlices(namespace string) kubeclient.EndpointSlices
}

// Metrics receives what the agent measures.
type Metrics interface {
	Reconciled(d time.Duration, err error)
	// Announcing: this node started (true) or stopped announcing a Service.
	Announcing(service string, on bool)
	Announced(vips int)
}

// Agent reconciles LoadBalancer Services on this node.
type Agent struct {
	cfg      Config
	client   Client
	elector  Elector
	janitor  LeaseJanitor
	dp       Dataplane
	metrics  Metrics
	recorder record.EventRecorder
	pm       PortMapper
	router   Router
	policy   Policy
	succ     Successors
	log      *slog.Logger
	clock    clock.Clock
	models   *kube.Models

	infs         kubeclient.Informers
	services     corelisters.ServiceLister
	nodes        corelisters.NodeLister
	svcIndex     cache.Indexer
	sliceIndex   cache.Indexer
	nodeIndex    cache.Indexer
	synced       []cache.InformerSynced
	queue        workqueue.TypedRateLimitingInterface[string]
	statusQueue  workqueue.TypedRateLimitingInterface[string]
	resyncPeriod time.Duration

	// What the reconcile worker concluded for each Service's status; the
	// status worker writes it, so an API that hangs never delays a
	// withdrawal.
	intentMu sync.Mutex
	intents  map[string]statusIntent

	// mu guards the worker's state against the address refresher; sync
	// holds it throughout.
	mu      sync.Mutex
	states  map[string]*serviceState
	byAddr  index[netip.Addr]   // the states by the addresses they use
	byLease index[election.Key] // the candidate states by their Lease
	// byForward: the states by the VIP their UPnP forwards point at
	byForward index[netip.Addr]

	labels *labeler // nil: no node labels

	fw     Firewall // nil: off
	fwLast map[netip.Addr][]svcsec.Port
	fwDone bool // fwLast was written

	shutdownOnce sync.Once
}

const (
	indexByVIP     = "vip"
	indexByService = "service"
	indexByLease   = "lease"
	indexByName    = "name"
	leasePrefix    = "kubevip-"
	// ConditionAnnounced is the Service condition vigil maintains.
	ConditionAnnounced = "vigil.io/Announced"
)

// New wires an agent. recorder may be nil (no Events).
func New(cfg Config, d Deps, log *slog.Logger) (*Agent, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, client: d.Client, elector: d.Elector, janitor: d.Janitor, dp: d.Dataplane, metrics: d.Metrics,
		recorder: d.Recorder, pm: d.PortMapper, router: d.Router, policy: d.Policy, succ: d.Successors, fw: d.Firewall, log: log, clock: cfg.Clock,
		models:       kube.NewModels(cfg.Class),
		queue:        workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		statusQueue:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		intents:      map[string]statusIntent{},
		states:       map[string]*serviceState{},
		byAddr:       newIndex((*serviceState).used),
		byLease:      newIndex((*serviceState).campaign),
		byForward:    newIndex((*serviceState).forwarded),
		resyncPeriod: 30 * time.Second,
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.recorder == nil {
		a.recorder = &record.FakeRecorder{}
	}
	if a.clock == nil {
		a.clock = clock.Real{}
	}
	if cfg.NodeLabels {
		a.labels = newLabeler()
	}
	if d.Names != nil {
		a.models.Resolve(d.Names)
	}
	if err := a.informers(); err != nil {
		return nil, err
	}
	return a, nil
}

func (c *Config) check() error {
	if c.NodeName == "" {
		return errors.New("agent: node name is required")
	}
	if !c.PerService && (c.LeaseName == "" || c.LeaseNamespace == "") {
		return errors.New("agent: a shared lease needs a name and a namespace")
	}
	if c.AddrMargin == 0 {
		c.AddrMargin = time.Second
	}
	if c.StatusLease.Name == "" {
		c.StatusLease = election.Key{Namespace: c.LeaseNamespace, Name: "vigil-status"}
		if c.StatusLease.Namespace == "" {
			c.StatusLease.Namespace = "kube-system"
		}
	}
	return nil
}

// informers sets up the Service, EndpointSlice and Node informers; their
// handlers only enqueue.
func (a *Agent) informers() error {
	slim := kubeclient.InformerOptions{Transform: kube.Slim}
	svcInf, err := kubeclient.NewInformer(a.client.Services(a.cfg.Namespace), a.client, &corev1.Service{}, slim)
	if err != nil {
		return err
	}
	sliceInf, err := a.endpointsInformer(slim)
	if err != nil {
		return err
	}
	nodeInf, err := kubeclient.NewInformer(a.client.Nodes(), a.client, &corev1.Node{}, slim)
	if err != nil {
		return err
	}
	a.infs.Add(svcInf)
	a.infs.Add(sliceInf)
	a.infs.Add(nodeInf)
	a.services = corelisters.NewServiceLister(svcInf.GetIndexer())
	a.nodes = corelisters.NewNodeLister(nodeInf.GetIndexer())
	a.svcIndex, a.sliceIndex, a.nodeIndex = svcInf.GetIndexer(), sliceInf.GetIndexer(), nodeInf.GetIndexer()
	a.synced = []cache.InformerSynced{svcInf.HasSynced, sliceInf.HasSynced, nodeInf.HasSynced}
	if a.policy != nil {
		a.synced = append(a.synced, a.policy.Synced)
	}
	if err := svcInf.AddIndexers(cache.Indexers{indexByVIP: a.vipIndex, indexByLease: a.leaseIndex, indexByName: nameIndex}); err != nil {
		return err
	}
	if err := sliceInf.AddIndexers(cache.Indexers{indexByService: sliceServiceIndex}); err != nil {
		return err
	}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		fn  func(any)
	}{{svcInf, a.enqueueService}, {sliceInf, a.enqueueSlice}, {nodeInf, a.enqueueNode}} {
		if _, err := h.inf.AddEventHandler(handler(h.fn)); err != nil {
			return err
		}
	}
	return nil
}

// handler calls fn with the old and the new object of every change.
func handler(fn func(any)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    fn,
		UpdateFunc: func(old, obj any) { fn(old); fn(obj) },
		DeleteFunc: fn,
	}
}

// vipIndex indexes Services by every address they ask for by address
// (host names' addresses change without the object: users adds them).
func (a *Agent) vipIndex(obj any) ([]string, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil, nil
	}
	m := a.models.Static(svc)
	out := make([]string, 0, len(m.Addrs))
	for _, ip := range m.Addrs {
		out = append(out, ip.String())
	}
	return out, nil
}

// endpointsInformer is the source of ready endpoints: EndpointSlices, or
// v1 Endpoints with Config.Endpoints.
func (a *Agent) endpointsInformer(o kubeclient.InformerOptions) (cache.SharedIndexInformer, error) {
	ns := a.cfg.Namespace
	if a.cfg.Endpoints {
		return kubeclient.NewInformer(a.client.Endpoints(ns), a.client, &corev1.Endpoints{}, o) //nolint:staticcheck // enable_endpoints asks for v1 Endpoints
	}
	return kubeclient.NewInformer(a.client.EndpointSlices(ns), a.client, &discoveryv1.EndpointSlice{}, o)
}

// sliceServiceIndex indexes EndpointSlices (or v1 Endpoints) by their
// Service's namespace/name.
func sliceServiceIndex(obj any) ([]string, error) {
	if ep, ok := obj.(*corev1.Endpoints); ok { //nolint:staticcheck // enable_endpoints
		return []string{ep.Namespace + "/" + ep.Name}, nil
	}
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

func unwrap(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (a *Agent) enqueueService(obj any) {
	svc, ok := unwrap(obj).(*corev1.Service)
	if !ok {
		return
	}
	a.queue.Add(svc.Namespace + "/" + svc.Name)
	// Services sharing an address decide together.
	for _, ip := range a.models.Get(svc).Addrs {
		for _, o := range a.users(ip) {
			a.queue.Add(o.Namespace + "/" + o.Name)
		}
	}
}

func (a *Agent) enqueueSlice(obj any) {
	if keys, _ := sliceServiceIndex(unwrap(obj)); len(keys) == 1 {
		a.queue.Add(keys[0])
	}
}

// enqueueNode re-evaluates every Service when a Node's eligibility may have
// changed (label, NetworkUnavailable, added, deleted).
func (a *Agent) enqueueNode(obj any) {
	n, ok := unwrap(obj).(*corev1.Node)
	if !ok {
		return
	}
	if a.labels != nil && n.Name == a.cfg.NodeName {
		a.labels.queue.Add("node")
	}
	a.enqueueAll()
}

// EnqueueAll asks for a sync of every Service (a configuration source
// changed).
func (a *Agent) EnqueueAll() { a.enqueueAll() }

func (a *Agent) enqueueAll() {
	for _, key := range a.svcIndex.ListKeys() {
		a.queue.Add(key)
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
	if (!a.cfg.PerService && k == a.sharedLease()) || (a.ecmp() && k == a.cfg.StatusLease) {
		a.enqueueAll()
		return
	}
	for _, svc := range byIndex[*corev1.Service](a, a.svcIndex, indexByLease, k.Namespace+"/"+k.Name) {
		a.enqueueService(svc)
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

// modes says whether a Service goes out by L2 and by BGP on this node.
func (a *Agent) modes(svc *kube.Service) (l2, bgp bool) {
	l2, bgp = !a.cfg.L2Off, a.router != nil
	if a.policy == nil || svc == nil {
		return l2, bgp
	}
	pl2, pbgp := a.policy.Modes(svc.PoolName())
	return l2 && pl2, bgp && pbgp
}

// electing reports whether Services need an elected node: for L2, or for
// BGP advertised by the Lease holder only.
func (a *Agent) electing(l2, bgp bool) bool {
	return l2 || (bgp && a.cfg.Routing == plan.RoutingElected)
}

// sessions is the number of this node's established BGP sessions.
func (a *Agent) sessions() int {
	if a.router == nil {
		return 0
	}
	return a.router.Peers()
}

// ecmp reports whether every eligible node advertises Services by BGP.
func (a *Agent) ecmp() bool { return a.router != nil && a.cfg.Routing == plan.RoutingECMP }

// routing is how this node advertises a Service by BGP.
func (a *Agent) routing(bgp bool) plan.Routing {
	if !bgp {
		return plan.RoutingOff
	}
	return a.cfg.Routing
}

// StatusWriter reports whether this node is the one writing status that
// every node could write (it holds the status Lease; BGP only).
func (a *Agent) StatusWriter() bool { return a.elector.Leading(a.cfg.StatusLease) }

// LeaseName is the per-service Lease of a Service (kube-vip's naming).
func LeaseName(service string) string { return leasePrefix + service }

func (a *Agent) sharedLease() election.Key {
	return election.Key{Namespace: a.cfg.LeaseNamespace, Name: a.cfg.LeaseName}
}

func perServiceLease(serviceKey string) election.Key {
	ns, name, _ := strings.Cut(serviceKey, "/")
	return election.Key{Namespace: ns, Name: LeaseName(name)}
}

// leaseKey is the Lease deciding a Service: the one it names
// (kube-vip.io/leaseName), else its own with per-service election, else
// the shared one — except for externalTrafficPolicy Local, which only a
// node with a local endpoint may announce, and for Services that force
// their own election (per_service_election_on_demand), which get their
// own.
func (a *Agent) leaseKey(key string, svc *kube.Service) election.Key {
	switch {
	case svc != nil && svc.Lease.Name != "":
		return election.Key{Namespace: svc.Lease.Namespace, Name: svc.Lease.Name}
	case a.cfg.PerService || (svc != nil && (svc.Local || (a.cfg.ElectionOnDemand && svc.ForcePerService))):
		return perServiceLease(key)
	}
	return a.sharedLease()
}

// NodeLabels are this node's labels as the agent's Node cache has them
// (nil: not seen). A change re-syncs every Service.
func (a *Agent) NodeLabels() map[string]string {
	if a.nodes == nil {
		return nil
	}
	n, err := a.nodes.Get(a.cfg.NodeName)
	if err != nil {
		return nil
	}
	return n.Labels
}

// leaseIndex indexes Services by the Lease they name
// (kube-vip.io/leaseName), so a change of that Lease reaches them.
func (a *Agent) leaseIndex(obj any) ([]string, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil, nil
	}
	if m := a.models.Get(svc); m.Lease.Name != "" {
		return []string{m.Lease.Namespace + "/" + m.Lease.Name}, nil
	}
	return nil, nil
}

// nameIndex indexes Services by the host names they ask for.
func nameIndex(obj any) ([]string, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil, nil
	}
	names, _ := kube.HostNames(svc)
	return names, nil
}

// NameChanged is the resolver's hook: the addresses of a host name
// changed. The Services asking for it are synced (with their siblings on
// the new addresses).
func (a *Agent) NameChanged(name string) {
	a.models.Invalidate()
	for _, svc := range byIndex[*corev1.Service](a, a.svcIndex, indexByName, name) {
		a.enqueueService(svc)
	}
}

// namedUsers returns the Services whose host names resolve to ip now.
func (a *Agent) namedUsers(ip netip.Addr) []*corev1.Service {
	var out []*corev1.Service
	for _, name := range a.svcIndex.ListIndexFuncValues(indexByName) {
		for _, svc := range byIndex[*corev1.Service](a, a.svcIndex, indexByName, name) {
			if m := a.models.Get(svc); slices.Contains(m.Addrs, ip) && !slices.Contains(out, svc) {
				out = append(out, svc)
			}
		}
	}
	return out
}

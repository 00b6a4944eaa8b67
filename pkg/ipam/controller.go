package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// Annotations the allocator reads (pool choice, sharing) and writes.
const (
	AnnotationPool        = "vigil.io/ip-pool"
	AnnotationMetalLBPool = "metallb.universe.tf/address-pool"
	AnnotationMetalLBNew  = "metallb.io/address-pool"
	AnnotationShare       = "vigil.io/allow-shared-ip"
	AnnotationMetalLBShr  = "metallb.universe.tf/allow-shared-ip"
	// AnnotationAllocatedFrom records the pool an address came from.
	AnnotationAllocatedFrom = "vigil.io/allocated-from"
)

// Config is the allocator's own configuration.
type Config struct {
	// Lease: one allocator at a time (identity POD_NAME, namespace
	// POD_NAMESPACE).
	LeaseName, LeaseNamespace string
	// Class: vigil's class; DefaultClass also handles Services with no
	// class or class "default" (kube-router's --loadbalancer-default-class).
	ClassName    string
	DefaultClass bool
}

// Elector is what the allocator needs of its election.
type Elector interface {
	Campaign(election.Key)
	Leading(election.Key) bool
}

// Controller allocates addresses while it leads.
type Controller struct {
	cfg      Config
	client   kubernetes.Interface
	dyn      dynamic.Interface
	el       Elector
	recorder record.EventRecorder
	log      *slog.Logger

	factory    informers.SharedInformerFactory
	cmFactory  informers.SharedInformerFactory
	dynFactory dynamicinformer.DynamicSharedInformerFactory
	services   corelisters.ServiceLister
	cms        corelisters.ConfigMapLister
	pools      cache.GenericLister
	synced     []cache.InformerSynced
	queue      workqueue.TypedRateLimitingInterface[string]

	// Worker-owned.
	alloc   *allocator.Allocator // nil while not leading
	pl      []allocator.Pool     // the pools it was given
	leading bool
	shared  map[string]bool // namespaces allowed to share (ConfigMap)
	said    map[string]string
	// written remembers what this process wrote, until the informer shows
	// it: a rebuild from a lagging lister must not free those addresses.
	written map[string][]netip.Addr
}

const (
	keyPools   = "\x00pools"   // pool set changed
	keyLeading = "\x00leading" // leadership changed
	keyStatus  = "\x00status"  // pool counts to write
)

// New wires the allocator controller.
func New(cfg Config, client kubernetes.Interface, dyn dynamic.Interface, el Elector, recorder record.EventRecorder, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.Default()
	}
	if recorder == nil {
		recorder = &record.FakeRecorder{}
	}
	c := &Controller{
		cfg: cfg, client: client, dyn: dyn, el: el, recorder: recorder, log: log.With("component", "allocator"),
		factory: informers.NewSharedInformerFactory(client, 0),
		cmFactory: informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ConfigMapNamespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ConfigMapName).String()
			})),
		dynFactory: dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0),
		queue:      workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		shared:     map[string]bool{}, said: map[string]string{}, written: map[string][]netip.Addr{},
	}
	svcInf := c.factory.Core().V1().Services().Informer()
	cmInf := c.cmFactory.Core().V1().ConfigMaps().Informer()
	poolInf := c.dynFactory.ForResource(IPPoolResource)
	c.services = c.factory.Core().V1().Services().Lister()
	c.cms = c.cmFactory.Core().V1().ConfigMaps().Lister()
	c.pools = poolInf.Lister()
	c.synced = []cache.InformerSynced{svcInf.HasSynced, cmInf.HasSynced, poolInf.Informer().HasSynced}
	enqueueSvc := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(k)
		}
	}
	_, _ = svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueSvc, UpdateFunc: func(_, o any) { enqueueSvc(o) }, DeleteFunc: enqueueSvc,
	})
	poolsChanged := func(any) { c.queue.Add(keyPools) }
	for _, inf := range []cache.SharedIndexInformer{cmInf, poolInf.Informer()} {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: poolsChanged, UpdateFunc: func(_, o any) { poolsChanged(o) }, DeleteFunc: poolsChanged,
		})
	}
	return c
}

func (c *Controller) leaseKey() election.Key {
	return election.Key{Namespace: c.cfg.LeaseNamespace, Name: c.cfg.LeaseName}
}

// LeaseChanged is the elector's notify hook.
func (c *Controller) LeaseChanged(k election.Key) {
	if k == c.leaseKey() {
		c.queue.Add(keyLeading)
	}
}

// HasSynced reports whether the caches are filled.
func (c *Controller) HasSynced() bool {
	for _, f := range c.synced {
		if !f() {
			return false
		}
	}
	return true
}

// Run campaigns for the allocator lease and allocates while leading.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	c.factory.Start(ctx.Done())
	c.cmFactory.Start(ctx.Done())
	c.dynFactory.Start(ctx.Done())
	defer c.factory.Shutdown()
	defer c.cmFactory.Shutdown()
	defer c.dynFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	c.el.Campaign(c.leaseKey())
	c.queue.Add(keyLeading)
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	for c.processNext(ctx) {
	}
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		c.log.Warn("allocator sync failed, will retry", "key", key, "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *Controller) sync(ctx context.Context, key string) error {
	leading := c.el.Leading(c.leaseKey())
	if !leading {
		if c.leading {
			c.log.Info("lost the allocator lease")
		}
		c.leading, c.alloc = false, nil
		return nil
	}
	if !c.leading || c.alloc == nil {
		// New term: rebuild everything from the Services themselves.
		c.log.Info("leading the allocator: rebuilding state from Services")
		if err := c.rebuild(ctx); err != nil {
			return err
		}
		c.leading = true
		return nil
	}
	switch key {
	case keyLeading:
		return nil
	case keyPools:
		return c.reloadPools(ctx)
	case keyStatus:
		return c.writePoolStatus(ctx)
	}
	return c.syncService(ctx, key)
}

// desiredPools reads IPPools and the ConfigMap.
func (c *Controller) desiredPools() ([]allocator.Pool, map[string]bool) {
	var pools []allocator.Pool
	objs, _ := c.pools.List(labels.Everything())
	for _, o := range objs {
		p, err := poolFromUnstructured(o)
		if err != nil {
			c.log.Warn("unreadable IPPool", "err", err)
			continue
		}
		rs, err := allocator.ParseRanges(p.Spec.Addresses)
		if err != nil {
			c.poolEvent(p, corev1.EventTypeWarning, "InvalidPool", err.Error())
			continue
		}
		auto := p.Spec.AutoAssign == nil || *p.Spec.AutoAssign
		ap := allocator.Pool{
			Name: p.Name, Ranges: rs, AutoAssign: auto, AvoidBuggyIPs: p.Spec.AvoidBuggyIPs,
			Namespaces: p.Spec.Namespaces, Priority: p.Spec.Priority,
		}
		if err := ap.Validate(); err != nil {
			c.poolEvent(p, corev1.EventTypeWarning, "InvalidPool", err.Error())
			continue
		}
		pools = append(pools, ap)
	}
	shared := map[string]bool{}
	if cm, err := c.cms.ConfigMaps(ConfigMapNamespace).Get(ConfigMapName); err == nil {
		cmPools, share, errs := configMapPools(cm)
		for _, err := range errs {
			c.log.Warn("kube-vip ConfigMap", "err", err)
			c.recorder.Event(cm, corev1.EventTypeWarning, "InvalidPool", err.Error())
		}
		for _, p := range cmPools {
			if slices.ContainsFunc(pools, func(q allocator.Pool) bool { return q.Name == p.Name }) {
				c.log.Warn("an IPPool has the name of a ConfigMap pool; the IPPool wins", "pool", p.Name)
				continue
			}
			pools = append(pools, p)
		}
		for _, ns := range share {
			shared[ns] = true
		}
	}
	return pools, shared
}

// rebuild starts a fresh allocator from the pools and every Service's
// current addresses (older Services first, so on a conflict the older one
// keeps its address), then allocates for those still without one.
func (c *Controller) rebuild(ctx context.Context) error {
	pools, shared := c.desiredPools()
	a, err := allocator.New(pools)
	if err != nil {
		return fmt.Errorf("allocator: %w", err)
	}
	c.alloc, c.shared, c.pl = a, shared, pools
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return err
	}
	slices.SortFunc(svcs, func(x, y *corev1.Service) int {
		if kube.Older(x, y) {
			return -1
		}
		if kube.Older(y, x) {
			return 1
		}
		return 0
	})
	for _, s := range svcs {
		c.restore(s)
	}
	for _, s := range svcs {
		if err := c.syncService(ctx, s.Namespace+"/"+s.Name); err != nil {
			c.queue.AddRateLimited(s.Namespace + "/" + s.Name)
		}
	}
	return c.writePoolStatus(ctx)
}

func (c *Controller) reloadPools(ctx context.Context) error {
	pools, shared := c.desiredPools()
	if err := c.alloc.SetPools(pools); err != nil {
		return fmt.Errorf("allocator pools: %w", err)
	}
	c.shared, c.pl = shared, pools
	for _, o := range c.alloc.Orphans() {
		ns, name, _ := strings.Cut(o.Owner, "/")
		if svc, err := c.services.Services(ns).Get(name); err == nil {
			c.event(svc, o.Owner, corev1.EventTypeWarning, "AddressOutsidePool",
				fmt.Sprintf("%s is no longer in any pool; the Service keeps it until it is deleted or given another address", o.Addr))
		}
	}
	// Services waiting for a pool may be served now.
	svcs, _ := c.services.List(labels.Everything())
	for _, s := range svcs {
		c.queue.Add(s.Namespace + "/" + s.Name)
	}
	return c.writePoolStatus(ctx)
}

// addressesOf returns the addresses a Service holds or asks for.
func addressesOf(svc *corev1.Service) []netip.Addr {
	req, err := kube.Addresses(svc)
	if err == nil && len(req.Addrs) > 0 {
		return req.Addrs
	}
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

func (c *Controller) sharingKey(svc *corev1.Service) string {
	for _, k := range []string{AnnotationShare, AnnotationMetalLBShr} {
		if v := strings.TrimSpace(svc.Annotations[k]); v != "" {
			return v
		}
	}
	if c.shared[svc.Namespace] {
		return "kubevip-share/" + svc.Namespace
	}
	return ""
}

func ports(svc *corev1.Service) []allocator.Port {
	var out []allocator.Port
	for _, p := range kube.Ports(svc) {
		out = append(out, allocator.Port{Port: int(p.Port), Protocol: string(p.Protocol)})
	}
	return out
}

// restore records what a Service already holds, whoever assigned it.
func (c *Controller) restore(svc *corev1.Service) {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return
	}
	key := svc.Namespace + "/" + svc.Name
	addrs := addressesOf(svc)
	if len(addrs) > 0 {
		delete(c.written, key) // the informer has caught up
	} else {
		addrs = c.written[key]
	}
	if len(addrs) == 0 {
		return
	}
	// The allocator holds one address per family and owner; kube-vip lets a
	// Service ask for more. Extra ones are held under key#n so they still
	// count as used.
	first, extra := splitByFamily(addrs)
	if err := c.alloc.Restore(key, first, c.sharingKey(svc), ports(svc)); err != nil {
		c.event(svc, key, corev1.EventTypeWarning, "AllocationFailed", err.Error())
	}
	for i, a := range extra {
		_ = c.alloc.Restore(fmt.Sprintf("%s#%d", key, i+1), []netip.Addr{a}, c.sharingKey(svc), ports(svc))
	}
}

// splitByFamily keeps the first address of each family and returns the rest.
func splitByFamily(addrs []netip.Addr) (first, extra []netip.Addr) {
	var v4, v6 bool
	for _, a := range addrs {
		switch {
		case a.Is4() && !v4:
			v4 = true
			first = append(first, a)
		case a.Is6() && !v6:
			v6 = true
			first = append(first, a)
		default:
			extra = append(extra, a)
		}
	}
	return first, extra
}

// release frees everything key holds, extras included.
func (c *Controller) release(key string) {
	c.alloc.Release(key)
	for i := 1; ; i++ {
		k := fmt.Sprintf("%s#%d", key, i)
		if _, ok := c.alloc.Lookup(k); !ok {
			return
		}
		c.alloc.Release(k)
	}
}

// handles applies kube-router's class rules.
func (c *Controller) handles(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || kube.Ignored(svc) {
		return false
	}
	cl := ""
	if svc.Spec.LoadBalancerClass != nil {
		cl = *svc.Spec.LoadBalancerClass
	}
	if cl == c.cfg.ClassName {
		return true
	}
	return c.cfg.DefaultClass && (cl == "" || cl == "default")
}

func (c *Controller) syncService(ctx context.Context, key string) error {
	ns, name, _ := strings.Cut(key, "/")
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.release(key)
		delete(c.said, key)
		delete(c.written, key)
		c.queue.Add(keyStatus)
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		c.release(key)
		return nil
	}
	if _, pending := c.written[key]; pending && len(addressesOf(svc)) == 0 {
		return nil // our write has not reached the informer yet
	}
	if have := addressesOf(svc); len(have) > 0 {
		delete(c.written, key)
		// Asked for by hand, or ours from before: check it.
		if !c.handles(svc) {
			c.restore(svc)
			return nil
		}
		req := c.request(svc, key)
		req.Requested, _ = splitByFamily(have)
		// What was asked for decides the families, whatever ipFamilies says
		// (kube-vip users put any address in the annotation).
		req.Families, req.Policy = nil, allocator.SingleStack
		for _, a := range req.Requested {
			req.Families = append(req.Families, allocator.FamilyOf(a))
		}
		if len(req.Families) == 2 {
			req.Policy = allocator.RequireDualStack
		}
		if _, err := c.alloc.Assign(req); err != nil {
			c.event(svc, key, corev1.EventTypeWarning, "AllocationFailed", "requested "+joinAddrs(have)+": "+err.Error())
			c.restore(svc) // it is in use on the network all the same
		}
		c.queue.Add(keyStatus)
		return nil
	}
	if !c.handles(svc) {
		return nil
	}
	if req, err := kube.Addresses(svc); err != nil || req.DHCP4 || req.DHCP6 {
		return nil // broken (the agents say so) or 0.0.0.0: from DHCP
	}
	res, err := c.alloc.Assign(c.request(svc, key))
	if err != nil {
		c.event(svc, key, corev1.EventTypeWarning, "AllocationFailed", err.Error())
		return nil
	}
	if err := c.write(ctx, svc, res); err != nil {
		// Keep the allocation: the write may have landed (a timeout), or
		// the lister may lag behind an earlier write of ours (a conflict
		// on a stale resourceVersion). Freeing the address here could hand
		// it to another Service. The retry reads the Service again.
		return err
	}
	addrs, _ := resultAddrs(res)
	c.written[key] = addrs
	addrs, pools := resultAddrs(res)
	c.event(svc, key, corev1.EventTypeNormal, "IPAllocated", fmt.Sprintf("%s from pool %s", joinAddrs(addrs), strings.Join(pools, ",")))
	c.queue.Add(keyStatus)
	return nil
}

func (c *Controller) request(svc *corev1.Service, key string) allocator.Request {
	req := allocator.Request{Owner: key, Namespace: svc.Namespace, SharingKey: c.sharingKey(svc), Ports: ports(svc)}
	for _, k := range []string{AnnotationPool, AnnotationMetalLBPool, AnnotationMetalLBNew} {
		if v := strings.TrimSpace(svc.Annotations[k]); v != "" {
			req.Pool = v
			break
		}
	}
	req.Families, req.Policy = families(svc)
	return req
}

// families maps spec.ipFamilies / ipFamilyPolicy to the allocator's terms.
func families(svc *corev1.Service) ([]allocator.Family, allocator.FamilyPolicy) {
	var out []allocator.Family
	for _, f := range svc.Spec.IPFamilies {
		if f == corev1.IPv6Protocol {
			out = append(out, allocator.IPv6)
		} else {
			out = append(out, allocator.IPv4)
		}
	}
	if len(out) == 0 {
		out = []allocator.Family{allocator.IPv4}
	}
	policy := allocator.SingleStack
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		policy = allocator.FamilyPolicy(*p)
	}
	return out, policy
}

// write records the allocation on the Service, only if the Service has not
// changed since we read it (resourceVersion), and only while leading.
func (c *Controller) write(ctx context.Context, svc *corev1.Service, res allocator.Result) error {
	if !c.el.Leading(c.leaseKey()) {
		return errors.New("no longer leading")
	}
	addrs, pools := resultAddrs(res)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": svc.ResourceVersion,
		"annotations": map[string]string{
			kube.AnnotationLoadBalancerIPs: joinAddrs(addrs),
			AnnotationAllocatedFrom:        strings.Join(pools, ","),
		},
	}})
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.client.CoreV1().Services(svc.Namespace).Patch(wctx, svc.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("record allocation: %w", err)
	}
	return nil
}

func (c *Controller) event(svc *corev1.Service, key, typ, reason, msg string) {
	if c.said[key] == reason+msg {
		return
	}
	c.said[key] = reason + msg
	c.log.Info("allocation", "service", key, "reason", reason, "message", msg)
	c.recorder.Event(svc, typ, reason, msg)
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func resultAddrs(res allocator.Result) ([]netip.Addr, []string) {
	var addrs []netip.Addr
	var pools []string
	for _, a := range res.Addrs {
		addrs = append(addrs, a.Addr)
		if !slices.Contains(pools, a.Pool) {
			pools = append(pools, a.Pool)
		}
	}
	return addrs, pools
}

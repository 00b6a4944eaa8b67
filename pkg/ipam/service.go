package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// syncService brings one Service's allocation in line with what it asks
// for and holds.
func (c *Controller) syncService(ctx context.Context, key string) error {
	switch {
	case !c.el.Leading(c.leaseKey()):
		c.endTerm()
		return nil
	case c.alloc == nil:
		c.control.Add(ctlLeading) // the term's rebuild looks at every Service
		return nil
	}
	ns, name, _ := strings.Cut(key, "/")
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.forget(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get Service %s: %w", key, err)
	}
	m := c.models.Get(svc)
	have := c.held(svc, m)
	switch {
	case !m.LoadBalancer:
		c.free(key)
	case len(have) > 0:
		delete(c.written, key) // the informer has caught up
		switch {
		case ours(m) && len(m.Addrs) == 0:
			return c.adopt(ctx, svc, m, have)
		case ours(m):
			c.confirm(svc, m, have)
		default:
			c.restore(svc, m, have)
		}
	case len(c.written[key]) > 0:
		// Our write has not reached the informer yet.
	case !ours(m):
		c.free(key)
	default:
		return c.allocate(ctx, svc, m)
	}
	return nil
}

// ours reports whether the allocator picks or checks the Service's
// addresses: handled, not DHCP, and not malformed (the agents report that).
func ours(m *kube.Service) bool {
	_, blocked := m.Blocked()
	return m.Handled && !m.DHCP.V4 && !m.DHCP.V6 && !blocked
}

// held returns the addresses a Service holds or asks for: the ones it
// requests, else those in its status. A Service of another class, or
// ignored, still holds its addresses: they count as used.
func (c *Controller) held(svc *corev1.Service, m *kube.Service) []netip.Addr {
	addrs := m.Addrs
	if !m.Handled {
		if r, err := kube.Addresses(svc); err == nil {
			addrs = r.Addrs
		} else {
			c.log.Debug("unreadable addresses of a Service that is not vigil's", "service", m.Key, "err", err)
		}
	}
	if len(addrs) == 0 {
		addrs = m.Ingress
	}
	return addrs
}

// confirm checks addresses a Service asked for (or holds from before)
// against the pools and the other Services. A problem is an Event; the
// addresses are counted as used all the same (they are on the network).
func (c *Controller) confirm(svc *corev1.Service, m *kube.Service, have []netip.Addr) {
	req, err := c.request(svc, m)
	if err != nil { // checked once its Namespace is seen
		c.restore(svc, m, have)
		return
	}
	req.Requested = have
	// What was asked for decides the families, whatever ipFamilies says
	// (kube-vip users put any address in the annotation).
	req.Families, req.Policy = familiesOf(have)
	before := c.lookup(m.Key)
	if _, err := c.alloc.Assign(req); err != nil {
		c.event(svc, m.Key, corev1.EventTypeWarning, "AllocationFailed", "requested "+joinAddrs(have)+": "+err.Error())
		c.restore(svc, m, have)
		return
	}
	delete(c.waiting, m.Key)
	c.changed(m.Key, before)
}

// adopt makes the addresses a Service holds only in its status (given by
// another load balancer: MetalLB's, during a switch) its own: they are
// checked as requested ones and written where the agents read them, so the
// Service keeps its address and is announced.
func (c *Controller) adopt(ctx context.Context, svc *corev1.Service, m *kube.Service, have []netip.Addr) error {
	req, err := c.request(svc, m)
	if err != nil { // adopted once its Namespace is seen
		c.restore(svc, m, have)
		return nil
	}
	req.Requested = have
	req.Families, req.Policy = familiesOf(have)
	before := c.lookup(m.Key)
	res, err := c.alloc.Assign(req)
	if err != nil {
		c.event(svc, m.Key, corev1.EventTypeWarning, "AllocationFailed", "in status "+joinAddrs(have)+": "+err.Error())
		c.restore(svc, m, have)
		return nil
	}
	delete(c.waiting, m.Key)
	c.changed(m.Key, before)
	addrs, pools := resultAddrs(res)
	if err := c.write(ctx, svc, addrs, pools); err != nil {
		if errors.Is(err, errNotLeading) {
			c.endTerm()
			return nil
		}
		return err
	}
	c.written[m.Key] = addrs
	c.event(svc, m.Key, corev1.EventTypeNormal, "IPAdopted", fmt.Sprintf("%s kept from the Service's status (pool %s)", joinAddrs(addrs), strings.Join(pools, ",")))
	return nil
}

// restore records what a Service holds, whoever assigned it. An address
// another Service holds is an Event; the Service waits for it.
func (c *Controller) restore(svc *corev1.Service, m *kube.Service, have []netip.Addr) {
	before := c.lookup(m.Key)
	if err := c.alloc.Restore(m.Key, have, c.sharingKey(m), ports(m)); err != nil {
		c.waiting[m.Key] = true
		c.event(svc, m.Key, corev1.EventTypeWarning, "AllocationFailed", err.Error())
		return
	}
	delete(c.waiting, m.Key)
	c.changed(m.Key, before)
}

// allocate picks addresses for a Service that has none and records them on
// it. A Service that cannot get one waits (with an Event) until an address
// is freed or the pools change.
func (c *Controller) allocate(ctx context.Context, svc *corev1.Service, m *kube.Service) error {
	req, err := c.request(svc, m)
	if err != nil { // its Namespace's Add queues it again
		c.log.Debug("allocation waits for the Service's Namespace", "service", m.Key, "err", err)
		return nil
	}
	before := c.lookup(m.Key)
	res, err := c.alloc.Assign(req)
	if err != nil {
		c.waiting[m.Key] = true
		c.event(svc, m.Key, corev1.EventTypeWarning, "AllocationFailed", err.Error())
		return nil
	}
	delete(c.waiting, m.Key)
	c.changed(m.Key, before)
	addrs, pools := resultAddrs(res)
	if err := c.write(ctx, svc, addrs, pools); err != nil {
		// Keep the allocation: the write may have landed (a timeout), or
		// the lister may lag behind an earlier write of ours (a conflict
		// on a stale resourceVersion). Freeing the address here could hand
		// it to another Service. The retry reads the Service again.
		if errors.Is(err, errNotLeading) {
			c.endTerm()
			return nil
		}
		c.event(svc, m.Key, corev1.EventTypeWarning, "AllocationNotRecorded", fmt.Sprintf("%s: %v (will retry)", joinAddrs(addrs), err))
		return err
	}
	c.written[m.Key] = addrs
	c.event(svc, m.Key, corev1.EventTypeNormal, "IPAllocated", fmt.Sprintf("%s from pool %s", joinAddrs(addrs), strings.Join(pools, ",")))
	return nil
}

// free releases what a Service holds.
func (c *Controller) free(key string) {
	delete(c.waiting, key)
	before := c.lookup(key)
	if len(before) == 0 {
		return
	}
	c.alloc.Release(key)
	c.changed(key, before)
}

// forget drops everything about a deleted Service.
func (c *Controller) forget(key string) {
	c.free(key)
	delete(c.said, key)
	delete(c.written, key)
	c.models.Forget(key)
}

func (c *Controller) lookup(key string) []netip.Addr {
	as, _ := c.alloc.Lookup(key)
	return as.Addrs
}

// changed follows up a change of what key holds: the pool counts, and, if
// an address was given up, the Services waiting for one, oldest first.
func (c *Controller) changed(key string, before []netip.Addr) {
	after := c.lookup(key)
	if slices.Equal(before, after) {
		return
	}
	c.control.Add(ctlStatus)
	if slices.ContainsFunc(before, func(x netip.Addr) bool { return !slices.Contains(after, x) }) {
		c.wake(key)
	}
}

// wake queues the waiting Services, oldest first.
func (c *Controller) wake(except string) {
	var waiting []*kube.Service
	for k := range c.waiting {
		ns, name, _ := strings.Cut(k, "/")
		if svc, err := c.services.Services(ns).Get(name); err == nil && k != except {
			waiting = append(waiting, c.models.Get(svc))
		}
	}
	slices.SortFunc(waiting, func(x, y *kube.Service) int {
		if x.Older(y) {
			return -1
		}
		return 1
	})
	for _, m := range waiting {
		c.queue.Add(m.Key)
	}
}

// request is what the Service asks of the allocator. It fails with
// errNamespaceUnseen while the Service's Namespace, whose labels may
// decide the pool, is not in the cache.
func (c *Controller) request(svc *corev1.Service, m *kube.Service) (allocator.Request, error) {
	req := allocator.Request{Owner: m.Key, Namespace: m.Namespace, Labels: svc.Labels, Pool: m.Pool, SharingKey: c.sharingKey(m), Ports: ports(m)}
	req.Families, req.Policy = families(m.Families, m.FamilyPolicy)
	var err error
	req.NamespaceLabels, err = c.namespaceLabels(m.Namespace)
	return req, err
}

// sharingKey is the Service's allow-shared-ip key, else the key of its
// namespace if the kube-vip ConfigMap lets it share.
func (c *Controller) sharingKey(m *kube.Service) string {
	if m.SharingKey != "" {
		return m.SharingKey
	}
	if c.shared[m.Namespace] {
		return "kubevip-share/" + m.Namespace
	}
	return ""
}

func ports(m *kube.Service) []allocator.Port {
	out := make([]allocator.Port, 0, len(m.Ports))
	for _, p := range m.Ports {
		out = append(out, allocator.Port{Port: int(p.Port), Protocol: string(p.Protocol)})
	}
	return out
}

// families maps spec.ipFamilies / ipFamilyPolicy to the allocator's terms.
func families(fams []corev1.IPFamily, policy corev1.IPFamilyPolicy) ([]allocator.Family, allocator.FamilyPolicy) {
	var out []allocator.Family
	for _, f := range fams {
		if f == corev1.IPv6Protocol {
			out = append(out, allocator.IPv6)
		} else {
			out = append(out, allocator.IPv4)
		}
	}
	if len(out) == 0 {
		out = []allocator.Family{allocator.IPv4}
	}
	if policy == "" {
		return out, allocator.SingleStack
	}
	return out, allocator.FamilyPolicy(policy)
}

// familiesOf returns the families of addrs, in order of appearance: one is
// SingleStack, two RequireDualStack.
func familiesOf(addrs []netip.Addr) ([]allocator.Family, allocator.FamilyPolicy) {
	var out []allocator.Family
	for _, a := range addrs {
		if f := allocator.FamilyOf(a); !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 2 {
		return out, allocator.RequireDualStack
	}
	return out, allocator.SingleStack
}

// write records the allocation on the Service, only if the Service has not
// changed since we read it (resourceVersion), and only while leading.
func (c *Controller) write(ctx context.Context, svc *corev1.Service, addrs []netip.Addr, pools []string) error {
	if !c.el.Leading(c.leaseKey()) {
		return errNotLeading
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": svc.ResourceVersion,
		"annotations": map[string]string{
			kube.AnnotationLoadBalancerIPs: joinAddrs(addrs),
			AnnotationAllocatedFrom:        strings.Join(pools, ","),
		},
	}})
	if err != nil {
		return fmt.Errorf("record allocation: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.client.Services(svc.Namespace).Patch(wctx, svc.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("record allocation: %w", err)
	}
	return nil
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

package ipam

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// desiredPools reads every pool source: IPPools (while their CRD is
// installed) and kube-vip-cloud-provider's ConfigMap. A source that is
// missing is no error; one that cannot be read is.
func (c *Controller) desiredPools() ([]allocator.Pool, map[string]bool, error) {
	pools, state, err := c.ipPools()
	if err != nil {
		return nil, nil, err
	}
	cmPools, shared, err := c.configMapPools()
	if err != nil {
		return nil, nil, err
	}
	c.objects = map[string]*corev1.ObjectReference{}
	pools = c.addSourcePools(pools)
	for _, p := range cmPools {
		if slices.ContainsFunc(pools, func(q allocator.Pool) bool { return q.Name == p.Name }) {
			c.log.Warn("an IPPool has the name of a ConfigMap pool; the IPPool wins", "pool", p.Name)
			continue
		}
		pools = append(pools, p)
	}
	c.saySources(state, len(cmPools), c.sourcePoolCount())
	c.reportSourceOverlaps(pools)
	return pools, shared, nil
}

// ipPools turns the IPPools into pools; a broken one is reported on itself
// and left out.
func (c *Controller) ipPools() ([]allocator.Pool, crdState, error) {
	objs, state, err := c.ippools.list()
	if err != nil {
		return nil, state, err
	}
	var pools []allocator.Pool
	for _, o := range objs {
		p, err := poolFromUnstructured(o)
		if err != nil {
			c.log.Warn("unreadable IPPool", "err", err)
			if u, ok := o.(*unstructured.Unstructured); ok {
				c.poolEvent(&IPPool{ObjectMeta: metaOf(u)}, corev1.EventTypeWarning, "InvalidPool", err.Error())
			}
			continue
		}
		ap, err := toPool(p)
		if err != nil {
			c.log.Warn("invalid IPPool", "pool", p.Name, "err", err)
			c.poolEvent(p, corev1.EventTypeWarning, "InvalidPool", err.Error())
			continue
		}
		pools = append(pools, ap)
	}
	return pools, state, nil
}

func toPool(p *IPPool) (allocator.Pool, error) {
	rs, err := allocator.ParseRanges(p.Spec.Addresses)
	if err != nil {
		return allocator.Pool{}, err
	}
	ap := allocator.Pool{
		Name: p.Name, Ranges: rs, AutoAssign: p.Spec.AutoAssign == nil || *p.Spec.AutoAssign,
		AvoidBuggyIPs: p.Spec.AvoidBuggyIPs, Namespaces: p.Spec.Namespaces, Priority: p.Spec.Priority,
	}
	if ap.NamespaceSelectors, err = selectors("namespaceSelectors", p.Spec.NamespaceSelectors); err != nil {
		return allocator.Pool{}, err
	}
	if ap.ServiceSelectors, err = selectors("serviceSelectors", p.Spec.ServiceSelectors); err != nil {
		return allocator.Pool{}, err
	}
	return ap, ap.Validate()
}

// selectors converts an IPPool's label selectors; the error names the bad
// one (namespaceSelectors[1]).
func selectors(field string, list []metav1.LabelSelector) ([]allocator.LabelMatcher, error) {
	var out []allocator.LabelMatcher
	for i, ls := range list {
		s, err := kube.SelectorFrom(ls)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// configMapPools reads kube-vip-cloud-provider's ConfigMap, if there is one.
func (c *Controller) configMapPools() ([]allocator.Pool, map[string]bool, error) {
	shared := map[string]bool{}
	cm, err := c.cms.ConfigMaps(ConfigMapNamespace).Get(ConfigMapName)
	if apierrors.IsNotFound(err) {
		return nil, shared, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ConfigMap %s/%s: %w", ConfigMapNamespace, ConfigMapName, err)
	}
	pools, share, errs := configMapPools(cm)
	for _, err := range errs {
		key := "configmap/" + err.Error()
		if v, ok := c.said[key]; !ok || v != cm.ResourceVersion {
			c.said[key] = cm.ResourceVersion // once per version of the ConfigMap
			c.log.Warn("kube-vip ConfigMap", "err", err)
			c.recorder.Event(cm, corev1.EventTypeWarning, "InvalidPool", err.Error())
		}
	}
	for _, ns := range share {
		shared[ns] = true
	}
	return pools, shared, nil
}

// saySources tells, once, on the allocator's Lease, that the IPPool CRD is
// not installed and what is served instead.
func (c *Controller) saySources(state crdState, cmPools, otherPools int) {
	if state != crdAbsent {
		delete(c.said, "lease/"+reasonNoIPPoolCRD)
		return
	}
	typ, msg := corev1.EventTypeNormal, fmt.Sprintf(
		"the IPPool CRD (%s) is not installed: serving %d pool(s) from ConfigMap %s/%s; IPPools are served once the CRD is installed (manifests/ippool-crd.yaml)",
		IPPoolResource.GroupResource(), cmPools, ConfigMapNamespace, ConfigMapName)
	if otherPools > 0 {
		msg = fmt.Sprintf("the IPPool CRD (%s) is not installed: serving %d pool(s) from ConfigMap %s/%s and %d from %s",
			IPPoolResource.GroupResource(), cmPools, ConfigMapNamespace, ConfigMapName, otherPools, c.sourceNames())
	}
	if cmPools+otherPools == 0 {
		typ, msg = corev1.EventTypeWarning, fmt.Sprintf(
			"no address pools: the IPPool CRD (%s) is not installed and ConfigMap %s/%s has no cidr-*/range-* keys; Services get no address until one exists",
			IPPoolResource.GroupResource(), ConfigMapNamespace, ConfigMapName)
	}
	if c.said["lease/"+reasonNoIPPoolCRD] != msg {
		c.log.Info("pool sources", "message", msg)
	}
	c.leaseEvent(typ, reasonNoIPPoolCRD, msg)
}

const reasonNoIPPoolCRD = "IPPoolCRDNotInstalled"

// rebuild starts a fresh allocator from the pools and every Service's
// current addresses (older Services first, so on a conflict the older one
// keeps its address), then queues every Service, oldest first.
func (c *Controller) rebuild(ctx context.Context) error {
	pools, shared, err := c.desiredPools()
	if err != nil {
		return err
	}
	a, err := allocator.New(pools)
	if err != nil {
		return fmt.Errorf("allocator: %w", err)
	}
	svcs, err := c.sortedServices()
	if err != nil {
		return err
	}
	c.alloc, c.shared, c.pl, c.waiting = a, shared, pools, map[string]bool{}
	for _, s := range svcs {
		m := c.models.Get(s)
		if have := c.held(s, m); m.LoadBalancer && len(have) > 0 {
			delete(c.written, m.Key)
			c.restore(s, m, have)
		} else if w := c.written[m.Key]; m.LoadBalancer && len(w) > 0 {
			c.restore(s, m, w) // our write, not yet in the informer
		}
	}
	for _, s := range svcs {
		c.queue.Add(s.Namespace + "/" + s.Name)
	}
	c.control.Add(ctlStatus)
	return nil
}

// sortedServices lists the Services, oldest first.
func (c *Controller) sortedServices() ([]*corev1.Service, error) {
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list Services: %w", err)
	}
	slices.SortFunc(svcs, func(x, y *corev1.Service) int {
		switch mx, my := c.models.Get(x), c.models.Get(y); {
		case mx.Older(my):
			return -1
		case my.Older(mx):
			return 1
		}
		return 0
	})
	return svcs, nil
}

// reloadPools applies a changed pool set: live Services keep their
// addresses (those now outside every pool hear about it), and every Service
// is looked at again (some may be served now).
func (c *Controller) reloadPools(_ context.Context) error {
	pools, shared, err := c.desiredPools()
	if err != nil {
		return err
	}
	if err := c.alloc.SetPools(pools); err != nil {
		return fmt.Errorf("allocator pools: %w", err)
	}
	c.shared, c.pl = shared, pools
	c.reportOrphans()
	svcs, err := c.sortedServices()
	if err != nil {
		return err
	}
	for _, s := range svcs {
		c.queue.Add(s.Namespace + "/" + s.Name)
	}
	c.control.Add(ctlStatus)
	return nil
}

// reportOrphans warns each Service holding an address outside every pool.
func (c *Controller) reportOrphans() {
	for _, o := range c.alloc.Orphans() {
		ns, name, _ := strings.Cut(o.Owner, "/")
		svc, err := c.services.Services(ns).Get(name)
		if err != nil {
			continue // gone: its own sync frees the address
		}
		c.event(svc, o.Owner, corev1.EventTypeWarning, "AddressOutsidePool",
			fmt.Sprintf("%s is no longer in any pool; the Service keeps it until it is deleted or given another address", o.Addr))
	}
}

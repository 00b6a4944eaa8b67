package ipam

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

// errNamespaceUnseen: a Service's Namespace is not in the cache yet (the
// Service's watch event came first) while a pool selects by namespace
// labels. The Namespace's Add queues the Service again.
var errNamespaceUnseen = errors.New("namespace not in the cache yet")

// namespaceLabels returns the labels of a namespace, from the cache. A
// namespace not seen yet is an error only while some pool selects by
// namespace labels: deciding without them could pick the wrong pool, and
// an address, once given, is kept.
func (c *Controller) namespaceLabels(name string) (map[string]string, error) {
	ns, err := c.nss.Get(name)
	switch {
	case err == nil:
		return ns.Labels, nil
	case c.selectsNamespaces():
		return nil, fmt.Errorf("%w: %s", errNamespaceUnseen, name)
	}
	return nil, nil
}

// selectsNamespaces reports whether a pool has namespace selectors.
func (c *Controller) selectsNamespaces() bool {
	return slices.ContainsFunc(c.pl, func(p allocator.Pool) bool { return len(p.NamespaceSelectors) > 0 })
}

// namespaceAdded queues the namespace's Services, which may wait for it.
// The initial list queues nothing: the term's rebuild looks at every
// Service.
func (c *Controller) namespaceAdded(obj any, isInInitialList bool) {
	if !isInInitialList {
		c.enqueueNamespace(obj)
	}
}

// namespaceUpdated queues the namespace's Services when its labels
// changed: pools with namespace selectors may serve them now (for what
// they do not hold yet).
func (c *Controller) namespaceUpdated(old, cur any) {
	o, ok := old.(*corev1.Namespace)
	n, ok2 := cur.(*corev1.Namespace)
	if ok && ok2 && maps.Equal(o.Labels, n.Labels) {
		return
	}
	c.enqueueNamespace(cur)
}

// enqueueNamespace queues every Service of a namespace.
func (c *Controller) enqueueNamespace(obj any) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	svcs, err := c.services.Services(ns.Name).List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range svcs {
		c.queue.Add(s.Namespace + "/" + s.Name)
	}
}

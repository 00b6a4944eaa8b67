package ipam

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

// PoolSource is one more source of pools besides IPPools and
// kube-vip-cloud-provider's ConfigMap (MetalLB's objects, through an
// adapter in pkg/cli). It calls the controller's PoolsChanged when its
// pools change.
type PoolSource interface {
	// Name names the source in logs and Events ("MetalLB").
	Name() string
	Pools() []SourcePool
	// Synced: the source has said what it has (the allocator waits for
	// it before it leads).
	Synced() bool
}

// SourcePool is a pool and the object defining it (for Events).
type SourcePool struct {
	allocator.Pool
	Object *corev1.ObjectReference
}

// PoolsChanged asks for the pools to be read again.
func (c *Controller) PoolsChanged() { c.control.Add(ctlPools) }

// sourcesSynced reports whether every extra source has synced.
func (c *Controller) sourcesSynced() bool {
	for _, s := range c.cfg.Sources {
		if !s.Synced() {
			return false
		}
	}
	return true
}

// addSourcePools appends the extra sources' pools to pools; a pool whose
// name is taken already is left out with a Warning on its object.
func (c *Controller) addSourcePools(pools []allocator.Pool) []allocator.Pool {
	for _, s := range c.cfg.Sources {
		for _, p := range s.Pools() {
			if slices.ContainsFunc(pools, func(q allocator.Pool) bool { return q.Name == p.Name }) {
				c.objectEvent(p.Object, "PoolNameTaken", fmt.Sprintf("%s pool %q left out: a pool of that name exists already (IPPool or another source); it is used", s.Name(), p.Name))
				continue
			}
			pools = append(pools, p.Pool)
			c.objects[p.Name] = p.Object
		}
	}
	return pools
}

// reportSourceOverlaps tells each extra source's pool that overlaps
// another pool, once per message: the allocator never hands an address
// out twice, but the operator should hear of it.
func (c *Controller) reportSourceOverlaps(pools []allocator.Pool) {
	for name, others := range overlapsByPool(pools) {
		if ref := c.objects[name]; ref != nil {
			c.objectEvent(ref, "PoolOverlap", fmt.Sprintf("pool %s: addresses overlap pool(s) %v; an address is never handed out twice", name, others))
		}
	}
}

// objectEvent records a Warning on an object once per message.
func (c *Controller) objectEvent(ref *corev1.ObjectReference, reason, msg string) {
	if ref == nil {
		c.log.Warn("pool source", "reason", reason, "message", msg)
		return
	}
	key := "object/" + ref.Namespace + "/" + ref.Kind + "/" + ref.Name + "/" + reason
	if c.said[key] == msg {
		return
	}
	c.said[key] = msg
	c.log.Warn("pool source", "object", ref.Kind+"/"+ref.Name, "reason", reason, "message", msg)
	c.recorder.Event(ref, corev1.EventTypeWarning, reason, msg)
}

// sourcePoolCount counts the extra sources' pools in use.
func (c *Controller) sourcePoolCount() int { return len(c.objects) }

// sourceNames names the extra sources ("MetalLB").
func (c *Controller) sourceNames() string {
	var names []string
	for _, s := range c.cfg.Sources {
		names = append(names, s.Name())
	}
	return strings.Join(names, ", ")
}

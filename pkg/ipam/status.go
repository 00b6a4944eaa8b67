package ipam

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

// ConditionOverlap is set on an IPPool whose addresses overlap another's.
const ConditionOverlap = "Overlapping"

// writePoolStatus writes each IPPool's counts and overlap condition when
// they changed.
func (c *Controller) writePoolStatus(ctx context.Context) error {
	if c.alloc == nil {
		return nil
	}
	stats := c.alloc.Stats()
	c.poolStats(stats)
	objs, _, err := c.ippools.list()
	if err != nil {
		return err
	}
	overlaps := overlapsByPool(c.pl)
	var errs []error
	for _, o := range objs {
		p, err := poolFromUnstructured(o)
		if err != nil {
			continue // reported by desiredPools
		}
		st := c.poolStatus(p, stats, overlaps)
		if equality.Semantic.DeepEqual(p.Status, st) {
			continue
		}
		p.Status = st
		if err := c.updatePoolStatus(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// poolStats passes the pools' counts to Config.OnPoolStats.
func (c *Controller) poolStats(stats map[string]allocator.PoolStats) {
	if c.cfg.OnPoolStats != nil {
		c.cfg.OnPoolStats(stats)
	}
}

// overlapsByPool lists, per pool, the pools it overlaps.
func overlapsByPool(pools []allocator.Pool) map[string][]string {
	overlaps := map[string][]string{}
	for _, o := range allocator.Overlaps(pools) {
		a, b := o.Pools[0], o.Pools[1]
		if !slices.Contains(overlaps[a], b) {
			overlaps[a] = append(overlaps[a], b)
			overlaps[b] = append(overlaps[b], a)
		}
	}
	return overlaps
}

// poolStatus is the status an IPPool should show.
func (c *Controller) poolStatus(p *IPPool, stats map[string]allocator.PoolStats, overlaps map[string][]string) IPPoolStatus {
	st := IPPoolStatus{IPv4: p.Status.IPv4, IPv6: p.Status.IPv6, Conditions: slices.Clone(p.Status.Conditions)}
	if s, ok := stats[p.Name]; ok {
		st.IPv4 = familyStatus(s.IPv4)
		st.IPv6 = familyStatus(s.IPv6)
	}
	cond := metav1.Condition{Type: ConditionOverlap, Status: metav1.ConditionFalse, Reason: "NoOverlap", ObservedGeneration: p.Generation}
	if others := overlaps[p.Name]; len(others) > 0 {
		cond.Status, cond.Reason = metav1.ConditionTrue, "Overlap"
		cond.Message = fmt.Sprintf("addresses overlap pool(s) %v; an address is never handed out twice", others)
		c.poolEvent(p, corev1.EventTypeWarning, "PoolOverlap", cond.Message)
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

func (c *Controller) updatePoolStatus(ctx context.Context, p *IPPool) error {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		return fmt.Errorf("IPPool %s status: %w", p.Name, err)
	}
	if _, err := c.dyn.Resource(IPPoolResource).UpdateStatus(ctx, &unstructured.Unstructured{Object: u}, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("IPPool %s status: %w", p.Name, err)
	}
	return nil
}

func familyStatus(s allocator.Counts) *FamilyStatus {
	if s.Total == 0 {
		return nil
	}
	return &FamilyStatus{Total: count(s.Total), Used: count(s.Used), Free: count(s.Free)}
}

// count renders a saturated count (a /64 has more than 2^64-1 addresses).
func count(n uint64) string {
	if n == ^uint64(0) {
		return ">=2^64"
	}
	return strconv.FormatUint(n, 10)
}

func (c *Controller) poolEvent(p *IPPool, typ, reason, msg string) {
	key := "pool/" + p.Name
	if c.said[key] == reason+msg {
		return
	}
	c.said[key] = reason + msg
	ref := &corev1.ObjectReference{APIVersion: IPPoolResource.GroupVersion().String(), Kind: "IPPool", Name: p.Name, UID: p.UID}
	c.recorder.Event(ref, typ, reason, msg)
}

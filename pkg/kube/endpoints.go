package kube

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Ready summarises a Service's EndpointSlices.
type Ready struct {
	Any   bool            // some endpoint is ready
	Nodes map[string]bool // nodes with a ready endpoint
}

// ReadyEndpoints reads which endpoints of a Service are ready and where. An
// endpoint with no ready condition counts as ready (the API's rule).
func ReadyEndpoints(slices []*discoveryv1.EndpointSlice) Ready {
	r := Ready{Nodes: map[string]bool{}}
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			r.Any = true
			if ep.NodeName != nil && *ep.NodeName != "" {
				r.Nodes[*ep.NodeName] = true
			}
		}
	}
	return r
}

// ReadyFromEndpoints reads the same from v1 Endpoints (kube-vip's
// enable_endpoints): every address in a subset's addresses is ready, the
// notReadyAddresses are not.
func ReadyFromEndpoints(eps []*corev1.Endpoints) Ready { //nolint:staticcheck // enable_endpoints
	r := Ready{Nodes: map[string]bool{}}
	for _, e := range eps {
		for _, sub := range e.Subsets {
			for _, addr := range sub.Addresses {
				r.Any = true
				if addr.NodeName != nil && *addr.NodeName != "" {
					r.Nodes[*addr.NodeName] = true
				}
			}
		}
	}
	return r
}

// LabelExcludeFromLB marks nodes that must not carry LoadBalancer traffic.
const LabelExcludeFromLB = corev1.LabelNodeExcludeBalancers

// NodeExcluded reports why a Node must not announce LoadBalancer addresses
// ("" if it may): the exclude-from-external-load-balancers label, or a
// NetworkUnavailable condition that is True (MetalLB's rules).
func NodeExcluded(n *corev1.Node) string {
	if _, ok := n.Labels[LabelExcludeFromLB]; ok {
		return "label " + LabelExcludeFromLB
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionTrue {
			return "condition NetworkUnavailable"
		}
	}
	return ""
}

// NodeReady reports whether a Node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

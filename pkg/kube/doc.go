// Package kube reads what a Service asks of vigil: which Services are ours
// (type, class, ignore), which addresses (kube-vip annotations or
// spec.loadBalancerIP), which ports, and which nodes may announce them
// (EndpointSlices and externalTrafficPolicy). Pure functions over API types.
package kube

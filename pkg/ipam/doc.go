// Package ipam is vigil's address allocator on the Kubernetes side: one
// leader-elected instance watches LoadBalancer Services and the pool
// sources — IPPool objects (while their CRD is installed: it is optional and
// picked up when installed later) and kube-vip-cloud-provider's ConfigMap —
// and writes each Service's address into the kube-vip.io/loadbalancerIPs
// annotation, which the agents announce. It reads Services through
// kube.Models under the same kube.ClassPolicy as the agents. The decisions
// themselves are made by the pure pkg/allocator.
package ipam

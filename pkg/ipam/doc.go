// Package ipam is vigil's address allocator on the Kubernetes side: one
// leader-elected instance watches LoadBalancer Services, IPPool objects and
// kube-vip-cloud-provider's ConfigMap, and writes each Service's address into
// the kube-vip.io/loadbalancerIPs annotation, which the agents announce. The
// decisions themselves are made by the pure pkg/allocator.
package ipam

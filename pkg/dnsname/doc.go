// Package dnsname resolves the host names a Service may give instead of
// addresses (kube-vip.io/loadbalancerIPs: "web.example.com") and resolves
// them again on a timer, reporting names whose addresses changed.
//
// Which addresses of a name count follows kube-vip's dns_mode: first (the
// first address returned), ipv4 (the first IPv4 one), ipv6 (the first IPv6
// one), dual (the first of each family). Lookups go through a Lookup
// (net.Resolver's LookupNetIP), the seam of the unit tests; time through
// internal/clock. The package imports nothing from Kubernetes or from the
// rest of vigil.
package dnsname

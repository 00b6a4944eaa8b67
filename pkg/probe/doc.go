// Package probe asks the local link whether some host answers for an
// address, as arping and ndisc6 do: one ARP request (IPv4) or one
// neighbour solicitation (IPv6), then the first matching reply before a
// deadline. vigil uses it before it takes over an address another load
// balancer held, so that the old holder is known to be silent first.
//
// It imports no Kubernetes code and no other vigil package.
package probe

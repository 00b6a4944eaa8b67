// Package agent is vigil's per-node controller for LoadBalancer Services.
//
// It follows kubernetes/sample-controller: informer event handlers (Services,
// EndpointSlices, Nodes), Lease changes and DHCP/UPnP changes only enqueue a
// Service key. One reconcile worker runs a level-triggered sync(ctx, key):
// it reads the parsed Service (kube.Models), gathers the facts (endpoints,
// node eligibility, the elector's view, what this node has up), asks
// pkg/plan what to do, and applies that through the Announcer, DHCP and
// PortMapper interfaces it declares. Only that worker (and the address
// refresher, under the same lock) touches the dataplane. A second worker,
// the status worker, writes what sync concluded into the Service (ingress,
// kube-vip.io/vipHost, the vigil.io/Announced condition) and sends the
// Warning Events of a status it changed, so an API that hangs never delays
// a withdrawal.
//
// Addresses shared by several Services are announced by exactly one node: a
// node starts announcing an address only when no other node holds the lease
// of any Service on it, and a node that is not announcing a shared address
// resigns its leases on it, so the current announcer collects them all.
package agent

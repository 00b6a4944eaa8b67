// Package agent is vigil's per-node controller for LoadBalancer Services.
//
// It follows kubernetes/sample-controller: informer event handlers, lease
// changes and endpoint changes only enqueue a Service key; one worker runs a
// level-triggered sync(ctx, key) from the listers, and only that worker
// touches the dataplane (bind, announce, withdraw) and writes status.
//
// Addresses shared by several Services are announced by exactly one node: a
// node starts announcing an address only when no other node holds the lease
// of any Service on it, and a node that is not announcing a shared address
// resigns its leases on it, so the current announcer collects them all.
package agent

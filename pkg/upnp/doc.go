// Package upnp forwards ports from a UPnP Internet Gateway Device (a home or
// office router) to a VIP: kube-vip's `enableUPNP` with the Service
// annotation `kube-vip.io/forwardUPNP`.
//
// Discover finds a gateway with an SSDP M-SEARCH for WANIPConnection:2,
// WANIPConnection:1 and WANPPPConnection:1 sent from a given local address
// (the VIP), and returns a Gateway whose SOAP requests also come from that
// address. That matters: a gateway in secure mode (miniupnpd's default
// secure_mode=yes) only maps a port to the address that asks for it. The
// gateway's external address is taken as it is, even when it is private or
// reserved (a router behind another NAT still forwards).
//
// A Manager keeps, per key (a Service), a desired set of mappings alive:
// Set records what is wanted and never blocks; Run, one goroutine, does the
// network I/O: it discovers the gateway (cached per local address, again
// after a transport error), adds the mappings, renews them at half their
// lease, deletes those no longer wanted (the old ones first when a key's
// local address changes), retries failures with backoff, and reports what
// is in place, the gateway's external address and the last error through
// State and the OnChange callback. Refreshes and retries are timed by an
// internal/clock Clock.
//
// When Run's context ends it deletes nothing: a mapping's internal client
// is the VIP, so when the VIP moves to another node the mapping stays
// valid, and the new holder, sending from the VIP, renews it (hand-over).
// To delete a key's mappings for good, Drain does it on the caller's
// goroutine, bounded by its context, whether Run runs or not; it must be
// called while the VIP is still up.
//
// Deleting a mapping needs the local address it was made from: a gateway in
// secure mode accepts a delete only from the mapping's own client. A
// mapping that cannot be deleted (the VIP already moved away) is retried
// until its lease runs out; the node that now holds the VIP sends from the
// same address, so its own add takes the mapping over.
//
// IPv4 only: SSDP goes to 239.255.255.250 and IGD port mappings are IPv4.
// The package knows nothing about Kubernetes.
package upnp

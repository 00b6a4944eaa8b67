// Package checker is the fault campaign's independent invariant checker. It
// looks at a lab only from outside — ARP and NDP probes sent with raw sockets
// from the client namespace, netlink address and link lists in every node
// namespace, and the Services as the API server shows them — and never
// imports vigil's own packages, so a bug in vigil cannot hide itself from it.
//
// The core (Checker) is pure: it is fed timestamped samples (which nodes hold
// an address, which nodes answered a probe round, what the API shows) and the
// campaign's own events (what each Service should look like, faults started
// and healed, the API server up or down, agents that exited), and it records
// every violation of the campaign's invariants as an episode with a start and
// an end time:
//
//  1. two-holders: two nodes hold, or answer ARP/NDP for, one L2 VIP at once
//     (a BGP VIP, which every advertising node binds on lo, is held by none);
//  2. not-announced: a Service that should be announced is not (no probe
//     answer, and no host route on the BGP router), longer than
//     LeaseDuration + 1 s after the last fault that touched it healed (or
//     after its own last change);
//  3. status-mismatch: while the API server is up and the Service is settled
//     (as in 2), status.loadBalancer.ingress disagrees with the network for
//     longer than 2 s;
//  4. address-clash: one address on two Services that may not share it;
//  5. agent-exit: an agent exits that the campaign did not stop;
//  6. leftover: after the campaign, anything a deleted Service left behind.
//
// The probes (Prober, NodeSampler, RouteSampler) run the sampling loops against real
// namespaces; they need root and are used by the lab campaign only.
package checker

// Package bgp is vigil's BGP speaker: it announces VIPs (/32 and /128 with
// next hop self) to routers, wrapping an embedded GoBGP v4 server
// (github.com/osrg/gobgp/v4). It imports no Kubernetes code and no other
// vigil package but internal/clock and pkg/bgpspec, whose types (Config,
// Peer, Route, PeerState...) are its own. Only cmd/vigil-bgp (vigil with
// its BGP speaker, which `vigil manager` execs into with bgp_enable) links
// it.
//
// A Speaker holds a desired state, set level-triggered by its callers:
// SetPeers makes the configured sessions match a list (adding, replacing a
// changed one, deleting the rest), Announce makes one route present with the
// given attributes (calling it again with the same route sends nothing),
// Withdraw removes one. Those calls may come before Run: they are recorded
// and applied when Run has started GoBGP. Run owns GoBGP's goroutines; when
// its context ends it withdraws every route, waits (bounded) until the
// withdrawals have been written to every established session, then closes
// the sessions with a Cease NOTIFICATION and stops GoBGP. Graceful restart is
// off unless a Peer asks for it, so a router drops the node's routes at once
// instead of keeping them for the restart time.
//
// By default the speaker only dials out (Config.ListenPort -1), so it can
// run beside a CNI's own BGP speaker listening on port 179 of the node.
//
// Families: a session to an IPv4 peer carries IPv4 unicast, a session to an
// IPv6 peer carries IPv6 unicast (MP-BGP); a route goes to the peers of its
// family. A Route's Peers restricts it to some peers (a global export policy
// rejects it for the others); nil or empty means every peer of its family.
//
// BFD (single-hop, RFC 5880/5881) is GoBGP's: intervals are given as
// time.Duration and converted to the microseconds GoBGP expects (kube-vip
// passes milliseconds, a bug not copied here). A peer's BFD is handed to
// GoBGP only once its BGP session is first established: FRR replaces its
// BFD session for a neighbour when the BGP session comes up, and a GoBGP
// BFD session already bound to the old one expires 3 s later and resets
// the BGP session (then idle 30 s) — measured against FRR 8.4 in the lab.
//
// GoBGP traps handled here: every path carries its Family (AddPath fails with
// "address family is not set" otherwise); WatchEvent is given WatchPeer
// ("no events to watch" otherwise).
//
// State changes of the sessions are reported through Changes, a channel with
// a buffer of one that is only ever signalled without blocking; Peers reads
// the current state.
package bgp

// Package bgpspec is the vocabulary of vigil's BGP speaker — its identity
// (Config), the sessions it is asked for (Peer, BFD), the routes it
// announces (Route, communities) and what it reports (PeerState) — with
// their validation, and nothing that speaks BGP.
//
// It exists so that a process can describe BGP without linking a BGP
// implementation: the agent plans routes and peers with these types and
// hands them to the speaker process (pkg/bgpproc), and only that process
// links GoBGP (pkg/bgp, whose types are these). The types marshal to JSON
// as they are (netip values as text, durations in nanoseconds); Config's
// logger and clock do not travel.
//
// It imports no Kubernetes code and no other vigil package but
// internal/clock.
package bgpspec

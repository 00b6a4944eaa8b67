// Package bgpspec is the vocabulary of vigil's BGP speaker — its identity
// (Config), the sessions it is asked for (Peer, BFD), the routes it
// announces (Route, communities) and what it reports (PeerState) — with
// their validation, and nothing that speaks BGP.
//
// It exists so that the agent's packages (pkg/cli, pkg/routed) can plan
// peers and routes without linking a BGP implementation: only vigil-bgp,
// the build of vigil that links GoBGP (pkg/bgp, whose types are these),
// has a speaker, and vigil's own binary stays without GoBGP's gRPC and
// protobuf packages.
//
// It imports no Kubernetes code and no other vigil package but
// internal/clock.
package bgpspec

// Package routed is the BGP dataplane of a node: an address advertised to
// the node's BGP peers is also made local to the node (bound on lo) so the
// node accepts its traffic, and hidden from ARP (pkg/arpguard) so the LAN
// never learns it from this node: routers send its traffic here, neighbours
// never do.
//
// It knows nothing of Kubernetes; the agent decides which addresses to
// advertise and calls Advertise and Withdraw. A journal records the
// addresses bound on lo, so a restarted agent removes what a killed one
// left behind (Recover).
package routed

// Package peering keeps this node's BGP sessions matching the
// configuration: the peers set by environment variables (kube-vip's
// bgp_peers) plus the BGPPeer objects whose nodeSelectors select this
// node, re-decided when the objects or the node's labels change.
package peering

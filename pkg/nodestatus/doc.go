// Package nodestatus publishes what one agent sees of its BGP sessions and
// reads it back for `vigil status`.
//
// Each node has one coordination.k8s.io Lease, vigil-node-<node>, in the
// agent's Lease namespace, labelled app.kubernetes.io/managed-by=vigil. Its
// annotation vigil.io/bgp-peers holds the sessions as compact JSON:
//
//	[{"peer":"198.18.0.254","asn":65001,"state":"established",
//	  "since":"2026-12-01T21:40:02Z","prefixes":2}]
//
// ("since" is when the session entered its state, omitted if never seen;
// "lastError", why it last went down, is omitted when empty). The Lease is
// only a record: it has no holder and takes no part in any election. A
// Publisher writes it only when the sessions changed, never on a timer.
package nodestatus

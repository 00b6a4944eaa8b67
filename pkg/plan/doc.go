// Package plan decides, with no I/O, what this node should do about a
// Service and its addresses, from facts the caller gathered: the parsed
// Service (pkg/kube), the Services it shares addresses with, where it may be
// announced (endpoints, node conditions), what the election says, and what
// this node has up now.
//
// The agent gathers those facts from its listers and the elector, asks this
// package, and hands the answer to its announcers; plan itself knows nothing
// of netlink, Leases or the API server, so every rule here is table-tested.
package plan

// Package netif binds and unbinds virtual IP addresses on a network
// interface through rtnetlink.
//
// A VIP is always added as a host prefix: /32 for IPv4 and /128 for IPv6.
// IPv6 VIPs carry IFA_F_NODAD, so they are usable at once instead of after
// duplicate address detection. Bind and Unbind are idempotent and report
// whether they changed the interface, so a caller can tell an address it
// added from one that was already there.
//
// BindFor binds with a kernel address lifetime (valid_lft and
// preferred_lft, whole seconds, rounded down) and refreshes it in place: the
// kernel then removes the address by itself when the lifetime ends, even if
// the process that bound it is stopped or killed. The kernel's removal can
// be late: its lifetime check runs at most once a second after any address
// change, so a removal lands up to about a second after the lifetime, more
// under RTNL contention (LapseSlack, measured by TestKernelLapseMeasure).
// BindFor never puts a lifetime on an address that is on the interface
// with a shorter prefix (the node's own). Each BindFor reads the
// interface's addresses first; BindForIn reads them from a Snapshot
// instead, so refreshing n addresses costs one dump, not n.
//
// A Link works in the network namespace of the netlink handle it was opened
// with: Open uses the caller's namespace, OpenWith takes any handle, for
// example one from netlink.NewHandleAt.
//
// A VIP announced by BGP only is bound on lo (OpenWith(h, "lo")): the node
// then accepts traffic routed to it, whatever interface it arrives on. Linux
// answers ARP on every interface for an IPv4 address on lo (arp_ignore=0),
// which package arpguard suppresses; it never answers neighbour
// solicitations for an IPv6 address on another interface. Loopback
// addresses themselves (127.0.0.0/8, ::1) are never VIPs: Bind and Unbind
// reject them and Addrs leaves ::1 out.
//
// InterfaceFor picks the interface a VIP belongs on when none is configured:
// the interface whose on-link prefix contains the VIP.
//
// The package knows nothing about Kubernetes or about announcing addresses;
// see package announce for gratuitous ARP and unsolicited neighbour
// advertisements.
package netif

// Package netif binds and unbinds virtual IP addresses on a network
// interface through rtnetlink.
//
// A VIP is always added as a host prefix: /32 for IPv4 and /128 for IPv6.
// IPv6 VIPs carry IFA_F_NODAD, so they are usable at once instead of after
// duplicate address detection. Bind and Unbind are idempotent and report
// whether they changed the interface, so a caller can tell an address it
// added from one that was already there.
//
// A Link works in the network namespace of the netlink handle it was opened
// with: Open uses the caller's namespace, OpenWith takes any handle, for
// example one from netlink.NewHandleAt.
//
// InterfaceFor picks the interface a VIP belongs on when none is configured:
// the interface whose on-link prefix contains the VIP.
//
// The package knows nothing about Kubernetes or about announcing addresses;
// see package announce for gratuitous ARP and unsolicited neighbour
// advertisements.
package netif

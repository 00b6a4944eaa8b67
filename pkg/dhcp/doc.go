// Package dhcp is a DHCPv4 client that keeps one lease alive on one
// existing interface, typically a macvlan made for one Service so that the
// lease follows the macvlan's stable MAC address from node to node.
//
// New opens the client's socket in the network namespace of the calling
// thread; Run acquires a lease and keeps it until its context ends:
//
//   - Acquiring: DISCOVER (with the rapid commit option, the requested
//     address and the host name), OFFER, REQUEST, ACK; or DISCOVER and a
//     rapid-commit ACK. Retransmissions back off 1, 2, 4, 8, then every 10
//     seconds; after 4 unanswered REQUESTs the client starts over.
//   - Bound: at T1 the client renews with a REQUEST unicast to the server
//     that granted the lease (ciaddr set), at T2 it rebinds with a
//     broadcast REQUEST, and at expiry it drops the lease and acquires
//     again, asking for the address it lost. Renewing and rebinding
//     REQUESTs are repeated after half the time left until T2 or expiry,
//     but not sooner than 1 s (RFC 2131 4.4.5, which says 60 s).
//   - A NAK drops the lease (or the offer) and the client acquires again at
//     once, without asking for the refused address; further NAKs in a row
//     back off like retransmissions.
//
// Config.OnChange tells the caller when Lease changes in a way that matters
// (acquired, lost, another address); Release gives the lease back.
//
// The socket is an AF_PACKET datagram socket bound to the interface, so the
// client works before the interface has any address, and a socket filter
// passes only UDP datagrams to port 68 to user space: the interface also
// carries the Service's traffic. Renewals and releases are IP-unicast to
// the server and sent to the Ethernet address the last ACK came from (the
// server, or the relay in front of it).
//
// UDP checksums of received datagrams are verified except when the kernel
// marks them partial (PACKET_AUXDATA, TP_STATUS_CSUMNOTREADY): replies that
// cross a veth, a macvlan or a local bridge with checksum offload carry a
// checksum only the kernel knows to be fine. Such replies are not dropped,
// so servers need no "ethtool -K ... tx off".
//
// What the caller must do: bind the leased address on this interface and
// have only this interface answer ARP for it (arp_ignore=1 on the parent, as
// on vigil's nodes). DHCP servers answer a renewing or rebinding REQUEST by
// unicast to the client's address; if nobody answers ARP for it with this
// interface's MAC, renewals fail, the lease expires and is acquired again
// (the same address, after a gap).
//
// The package knows nothing about Kubernetes, macvlans or binding addresses.
package dhcp

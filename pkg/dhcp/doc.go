// Package dhcp is a DHCP client (DHCPv4, and DHCPv6 for one IA_NA address)
// that keeps one lease alive on one existing interface, typically a macvlan
// made for one Service so that the lease follows the macvlan's stable MAC
// address from node to node.
//
// New (DHCPv4) and New6 (DHCPv6) open the client's socket in the network
// namespace of the calling thread; Run acquires a lease and keeps it until
// its context ends. Both families share the Client (its goroutines, timer,
// Lease and Release); each has its own protocol machine without I/O or a
// clock, table-tested on its own.
//
// DHCPv4:
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
// DHCPv6 (RFC 8415, machine6): Solicit (Rapid Commit, the IA_NA with the
// address asked for, the FQDN option) to ff02::1:2, the first Advertise
// that offers an address is taken with a Request; Renew to that server
// from T1 and Rebind to any from T2, repeated like DHCPv4's; at the end of
// the valid lifetime, or on a Reply without the address, the lease is
// dropped and acquired again. The DUID is DUID-LL of the interface's MAC
// and the IAID its last four bytes, so the same MAC gets the same lease on
// any node. The socket is UDP [::]:546 bound to the interface
// (SO_BINDTODEVICE); the kernel sends from the interface's link-local
// address, so sends fail (and are retransmitted on the schedule) until that
// address has passed DAD.
//
// The package knows nothing about Kubernetes, macvlans or binding addresses.
package dhcp

// Package arpguard keeps a node from answering ARP for virtual IPs that are
// announced by BGP only.
//
// A BGP-announced VIP must be local to the node so that it accepts the
// traffic routed to it (an address on lo, a host prefix), but with Linux's
// default arp_ignore=0 the node then answers ARP requests for that address
// on every interface, eth0 included: the VIP would be claimed on the LAN as
// if it were announced by ARP. Guard suppresses those answers without
// touching any sysctl, global or per interface. It owns one nftables table,
// "arp vigil", and nothing else:
//
//	table arp vigil {
//		set bgp_vips { type ipv4_addr }
//		chain output {
//			type filter hook output priority filter; policy accept;
//			# Ethernet/IPv4 ARP replies claiming a VIP are dropped.
//			arp ptype ip arp hlen 6 arp plen 4 arp operation reply
//				arp saddr ip @bgp_vips drop
//			# ARP requests the node sends with a VIP as sender (the kernel
//			# does so for traffic sourced from the VIP, arp_announce=0)
//			# become RFC 5227 probes (sender 0.0.0.0): the neighbour still
//			# answers, but learns nothing about the VIP.
//			arp ptype ip arp hlen 6 arp plen 4 arp operation request
//				arp saddr ip @bgp_vips arp saddr ip set 0.0.0.0
//		}
//	}
//
// Every rule carries a comment naming this package and the rule version
// (nft list ruleset prints it). The hook sees the ARP packets the kernel
// sends, not those a program writes to a packet socket (gratuitous ARP
// from package announce), so the guard never hides an ARP announcement.
//
// Set writes only what differs from its last write, in one nftables
// transaction, and reads the table back when that write fails, when it
// does not know what it wrote, and on a check — a Set with the addresses it
// wrote last, which the owner makes now and then (pkg/routed's Check, on
// the agent's periodic resync). So a table that was deleted or altered by
// someone else (nft flush ruleset, a previous run of the agent that
// crashed) is repaired at the latest by the next check. When the table is
// absent or not exactly as Set writes it, Set replaces it in one
// transaction (add, delete, add again): there is no instant without the
// rules. Set with no IPv4 address deletes the table; Close and Cleanup
// delete it too, whether or not it exists.
//
// IPv6 needs no guard: the kernel answers a neighbour solicitation only for
// an address on the interface that received it (ndisc_recv_ns looks the
// target up with ipv6_get_ifaddr strict on the device), so a VIP on lo is
// never advertised on eth0. TestKernelNDPNotAnsweredForLoopback proves it on
// the running kernel. Set accepts IPv6 addresses and ignores them.
//
// Only VIPs that are not announced by ARP belong in the set: an address in
// it is never answered by ARP from this node, on any interface.
//
// A Guard works in the network namespace of the nftables.Conn it is given
// (nftables.WithNetNSFd); the package imports nothing from Kubernetes or
// from the rest of vigil.
package arpguard

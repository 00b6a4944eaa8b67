// Package svcsec drops traffic to a node's VIPs on the ports their Services
// do not expose (kube-vip's enable_service_security).
//
// It owns one nftables table, "inet vigil_svcsec", and nothing else. Its
// one chain hooks prerouting at priority -150 (after conntrack, before
// kube-proxy's DNAT at -100), so it sees the VIP as the destination whether
// or not kube-proxy rewrites it later. For every guarded VIP, in order:
//
//	ip daddr VIP meta l4proto tcp th dport PORT accept   # one per Service port
//	ip daddr VIP meta l4proto icmp accept                # ping, PMTU
//	ip daddr VIP drop
//
// (ip6 daddr and icmpv6 — which NDP needs — for IPv6 VIPs.) Set rewrites the
// whole table in one transaction (add, delete, add again), so there is no
// instant without rules; Set with no VIP deletes the table. The table
// exists only while some VIP is guarded, so the rules go with the VIPs.
//
// The package imports nothing from Kubernetes or from the rest of vigil.
package svcsec

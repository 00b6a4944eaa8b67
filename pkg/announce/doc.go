// Package announce tells the local link that this host now answers for an
// address, so that neighbours and switches move traffic for a VIP to it.
//
// For IPv4 it sends gratuitous ARP: per announcement one ARP request and one
// ARP reply, both broadcast, with sender and target protocol address set to
// the VIP. The reply carries the sender's hardware address as target too, so
// Linux neighbours treat it as gratuitous and update an existing entry even
// with arp_accept=0. For IPv6 it sends an unsolicited neighbour advertisement
// to ff02::1 with the Override flag and a target link-layer address option.
//
// A Conn sends single announcements. An Announcer keeps a set of addresses
// announced on one interface: one announcement as soon as an address is
// added, a short burst after it, then a periodic refresh, all driven by one
// goroutine, Run. AddUntil gives an address an end (its kernel lifetime
// runs out then): it is never announced at or after it, which is checked
// right before every send, also when a stopped process resumes.
//
// The package knows nothing about Kubernetes or about binding addresses;
// see package netif for that.
package announce

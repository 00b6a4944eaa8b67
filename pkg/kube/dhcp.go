package kube

import (
	"crypto/sha256"
	"net"

	"k8s.io/apimachinery/pkg/types"
)

// derivedMAC is the MAC a Service's DHCP macvlan uses without
// kube-vip.io/hwaddr: derived from the Service UID (locally administered,
// unicast), so every node asks with the same MAC and the DHCP server hands
// out the same address after a failover.
func derivedMAC(uid types.UID) net.HardwareAddr {
	sum := sha256.Sum256([]byte(uid))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = (mac[0] &^ 0x01) | 0x02
	return mac
}

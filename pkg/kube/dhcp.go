package kube

import (
	"crypto/sha256"
	"net"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// HardwareAddr is the MAC a Service's DHCP macvlan uses: kube-vip.io/hwaddr
// when it holds a valid unicast MAC, else one derived from the Service UID
// (locally administered, unicast), so every node asks with the same MAC and
// the DHCP server hands out the same address after a failover.
func HardwareAddr(svc *corev1.Service) net.HardwareAddr {
	if v := strings.TrimSpace(svc.Annotations[AnnotationHWAddr]); v != "" {
		if mac, err := net.ParseMAC(v); err == nil && len(mac) == 6 && mac[0]&1 == 0 {
			return mac
		}
	}
	sum := sha256.Sum256([]byte(svc.UID))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = (mac[0] &^ 0x01) | 0x02
	return mac
}

// Hostname is the DHCP host name (option 12) for a Service:
// kube-vip.io/loadbalancerHostname, else the Service name.
func Hostname(svc *corev1.Service) string {
	if v := strings.TrimSpace(svc.Annotations[AnnotationHostname]); v != "" {
		return v
	}
	return svc.Name
}

// RequestedIP is the address a Service got from DHCP before
// (kube-vip.io/requestedIP), if valid.
func RequestedIP(svc *corev1.Service) netip.Addr {
	a, err := netip.ParseAddr(strings.TrimSpace(svc.Annotations[AnnotationRequestedIP]))
	if err != nil || !a.Is4() {
		return netip.Addr{}
	}
	return a
}

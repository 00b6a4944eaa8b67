package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// kube-vip's annotations, honoured as they are.
const (
	AnnotationLoadBalancerIPs = "kube-vip.io/loadbalancerIPs"
	AnnotationIgnore          = "kube-vip.io/ignore"
	AnnotationVIPHost         = "kube-vip.io/vipHost"
	AnnotationHostname        = "kube-vip.io/loadbalancerHostname"
	AnnotationForwardUPNP     = "kube-vip.io/forwardUPNP"
	AnnotationHWAddr          = "kube-vip.io/hwaddr"
	AnnotationRequestedIP     = "kube-vip.io/requestedIP"

	// DefaultClass is kube-vip's load balancer class.
	DefaultClass = "kube-vip.io/kube-vip-class"
	// ServiceNameLabel links an EndpointSlice to its Service.
	ServiceNameLabel = discoveryv1.LabelServiceName
)

// Request is what a Service asks for.
type Request struct {
	Addrs []netip.Addr // static VIPs, sorted, unique
	DHCP4 bool         // 0.0.0.0: an IPv4 address from DHCP
	DHCP6 bool         // ::: an IPv6 address from DHCP
}

// Empty reports whether nothing was asked for.
func (r Request) Empty() bool { return len(r.Addrs) == 0 && !r.DHCP4 && !r.DHCP6 }

// Addresses reads the Service's requested addresses:
// kube-vip.io/loadbalancerIPs (comma list) wins over spec.loadBalancerIP.
func Addresses(svc *corev1.Service) (Request, error) {
	if v, ok := svc.Annotations[AnnotationLoadBalancerIPs]; ok && strings.TrimSpace(v) != "" {
		r, err := ParseAddresses(v)
		if err != nil {
			return Request{}, fmt.Errorf("annotation %s: %w", AnnotationLoadBalancerIPs, err)
		}
		return r, nil
	}
	if v := strings.TrimSpace(svc.Spec.LoadBalancerIP); v != "" {
		r, err := ParseAddresses(v)
		if err != nil {
			return Request{}, fmt.Errorf("spec.loadBalancerIP: %w", err)
		}
		return r, nil
	}
	return Request{}, nil
}

// ParseAddresses parses a comma-separated address list. 0.0.0.0 and :: ask
// for DHCP. Duplicates collapse; at most one address per family is not
// required (kube-vip allows several).
func ParseAddresses(s string) (Request, error) {
	var r Request
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return Request{}, fmt.Errorf("invalid address %q", f)
		}
		if a.Zone() != "" {
			return Request{}, fmt.Errorf("invalid address %q: zones are not allowed", f)
		}
		a = a.Unmap()
		switch {
		case a == netip.IPv4Unspecified():
			r.DHCP4 = true
		case a == netip.IPv6Unspecified():
			r.DHCP6 = true
		case a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsInterfaceLocalMulticast():
			return Request{}, fmt.Errorf("invalid address %q: not a unicast address for a VIP", f)
		case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return Request{}, fmt.Errorf("invalid address %q: broadcast", f)
		default:
			r.Addrs = append(r.Addrs, a)
		}
	}
	slices.SortFunc(r.Addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	r.Addrs = slices.Compact(r.Addrs)
	if r.Empty() {
		return Request{}, fmt.Errorf("no address in %q", s)
	}
	return r, nil
}

// Ignored reports kube-vip.io/ignore: "true".
func Ignored(svc *corev1.Service) bool {
	return strings.EqualFold(strings.TrimSpace(svc.Annotations[AnnotationIgnore]), "true")
}

// Port is one (port, protocol) pair a Service exposes on its VIP.
type Port struct {
	Port     int32
	Protocol corev1.Protocol
}

// Ports lists the Service's ports (protocol defaults to TCP).
func Ports(svc *corev1.Service) []Port {
	var out []Port
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		out = append(out, Port{Port: p.Port, Protocol: proto})
	}
	return out
}

// Collide returns the first (port, protocol) pair a and b share.
func Collide(a, b []Port) (Port, bool) {
	for _, p := range a {
		if slices.Contains(b, p) {
			return p, true
		}
	}
	return Port{}, false
}

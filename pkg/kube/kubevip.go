package kube

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// More of kube-vip's per-Service annotations (issue 10).
const (
	// AnnotationWithoutEndpoints: with externalTrafficPolicy Cluster,
	// announce although the Service has no ready endpoint.
	AnnotationWithoutEndpoints = "kube-vip.io/allow-reconcile-without-endpoints"
	// AnnotationServiceInterface binds the Service's VIPs on this
	// interface ("auto": the one whose subnet holds the VIP) instead of
	// vip_servicesinterface / vip_interface.
	AnnotationServiceInterface = "kube-vip.io/serviceInterface"
	// AnnotationLeaseName elects the Service with this Lease ("name" in
	// the Service's namespace, or "namespace/name"); Services naming the
	// same Lease share one election. externalTrafficPolicy Cluster only.
	AnnotationLeaseName = "kube-vip.io/leaseName"
	// AnnotationForcePerService gives the Service its own Lease in
	// shared-lease mode when per_service_election_on_demand is on.
	AnnotationForcePerService = "kube-vip.io/forcePerServiceElection"
	// AnnotationDHCPBroadcast sets the BOOTP broadcast flag in the
	// Service's DHCP messages.
	AnnotationDHCPBroadcast = "kube-vip.io/dhcp-broadcast"
	// AnnotationRPFilter sets rp_filter (0-2) on the Service's DHCP
	// macvlan.
	AnnotationRPFilter = "kube-vip.io/rp_filter"
	// AnnotationMacvlanName names the DHCP macvlan; Services naming the
	// same one share it and its address.
	AnnotationMacvlanName = "kube-vip.io/macvlanName"
	// AnnotationServiceVLAN binds the Service's VIPs on an 802.1Q link:
	// "200" (on the default interface) or "eth0.200".
	AnnotationServiceVLAN = "kube-vip.io/serviceVLAN"
)

// VLANRef is a VLAN a Service asks for (ID 0: none).
type VLANRef struct {
	Parent string // "": the default interface
	ID     int
}

// LeaseRef names a Lease a Service asked for.
type LeaseRef struct{ Namespace, Name string }

// parseKubevip reads the kube-vip annotations that tune where and how a
// Service is announced. A value that is not understood is a Warning
// (InvalidAnnotation) and the documented default applies.
func (s *Service) parseKubevip(svc *corev1.Service) {
	s.parseWithoutEndpoints(svc)
	s.parseVLAN(svc)
	s.parseLease(svc)
	if v := strings.TrimSpace(svc.Annotations[AnnotationServiceInterface]); v != "" {
		if validInterfaceName(v) {
			s.Interface = v
		} else {
			s.problem(ReasonInvalidAnnotation, AnnotationServiceInterface, "%q is not an interface name; using the default interface", v)
		}
	}
}

// validInterfaceName: what Linux accepts as a link name (1-15 bytes, no
// '/', ':' or white space, not "." or "..").
func validInterfaceName(n string) bool {
	if len(n) == 0 || len(n) > 15 || n == "." || n == ".." {
		return false
	}
	return !strings.ContainsAny(n, "/: \t\n")
}

func (s *Service) parseWithoutEndpoints(svc *corev1.Service) {
	if v, ok := boolAnnotation(svc, AnnotationWithoutEndpoints); ok {
		switch {
		case v && s.Local:
			s.problem(ReasonInvalidAnnotation, AnnotationWithoutEndpoints, "ignored with externalTrafficPolicy Local: only a node with a ready endpoint announces")
		default:
			s.WithoutEndpoints = v
		}
	} else if raw := svc.Annotations[AnnotationWithoutEndpoints]; strings.TrimSpace(raw) != "" {
		s.problem(ReasonInvalidAnnotation, AnnotationWithoutEndpoints, "%q is not true or false; using false", raw)
	}
}

// boolAnnotation reads "true"/"false" (any case); ok is false when the
// annotation is absent or says something else.
func boolAnnotation(svc *corev1.Service, key string) (v, ok bool) {
	switch strings.ToLower(strings.TrimSpace(svc.Annotations[key])) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// InterfaceName is the interface the Service asks for ("" when s is nil
// or asks for none).
func (s *Service) InterfaceName() string {
	if s == nil {
		return ""
	}
	return s.Interface
}

// parseLease reads kube-vip.io/leaseName and
// kube-vip.io/forcePerServiceElection.
func (s *Service) parseLease(svc *corev1.Service) {
	s.ForcePerService, _ = boolAnnotation(svc, AnnotationForcePerService)
	v := strings.TrimSpace(svc.Annotations[AnnotationLeaseName])
	if v == "" {
		return
	}
	ref := LeaseRef{Namespace: svc.Namespace, Name: v}
	if ns, name, ok := strings.Cut(v, "/"); ok {
		ref = LeaseRef{Namespace: ns, Name: name}
	}
	switch {
	case s.Local:
		s.problem(ReasonInvalidAnnotation, AnnotationLeaseName, "ignored with externalTrafficPolicy Local: the Service keeps its own Lease")
	case len(validation.IsDNS1123Subdomain(ref.Name)) > 0 || len(validation.IsDNS1123Label(ref.Namespace)) > 0:
		s.problem(ReasonInvalidAnnotation, AnnotationLeaseName, "%q is not a Lease name or namespace/name; using the default Lease", v)
	default:
		s.Lease = ref
	}
}

// parseDHCPTuning reads kube-vip.io/dhcp-broadcast and
// kube-vip.io/rp_filter.
func (s *Service) parseDHCPTuning(svc *corev1.Service) {
	if v, ok := boolAnnotation(svc, AnnotationDHCPBroadcast); ok {
		s.DHCP.Broadcast = v
	} else if raw := strings.TrimSpace(svc.Annotations[AnnotationDHCPBroadcast]); raw != "" {
		s.problem(ReasonInvalidAnnotation, AnnotationDHCPBroadcast, "%q is not true or false; using false", raw)
	}
	if v := strings.TrimSpace(svc.Annotations[AnnotationMacvlanName]); v != "" {
		if validInterfaceName(v) && v != "auto" {
			s.DHCP.Macvlan = v
		} else {
			s.problem(ReasonInvalidAnnotation, AnnotationMacvlanName, "%q is not an interface name; using the Service's own macvlan", v)
		}
	}
	raw := strings.TrimSpace(svc.Annotations[AnnotationRPFilter])
	if raw == "" {
		return
	}
	if n, err := strconv.Atoi(raw); err == nil && n >= 0 && n <= 2 {
		s.DHCP.RPFilter = &n
		return
	}
	s.problem(ReasonInvalidAnnotation, AnnotationRPFilter, "%q is not 0, 1 or 2; leaving rp_filter as it is", raw)
}

// splitNames takes the host names out of a comma-separated address list:
// fields that are not IP addresses but DNS names of at least two labels
// with a letter in them ("198.18.0.300" and "bogus" stay, to be reported as
// invalid addresses).
func splitNames(raw string) (names []string, rest string) {
	var keep []string
	for _, f := range strings.Split(raw, ",") {
		f = strings.TrimSpace(f)
		if _, err := netip.ParseAddr(f); err != nil && isHostName(f) {
			if !slices.Contains(names, strings.ToLower(f)) {
				names = append(names, strings.ToLower(f))
			}
			continue
		}
		keep = append(keep, f)
	}
	slices.Sort(names)
	return names, strings.Trim(strings.Join(keep, ","), ", ")
}

func isHostName(f string) bool {
	f = strings.TrimSuffix(f, ".")
	return strings.Contains(f, ".") && len(validation.IsDNS1123Subdomain(strings.ToLower(f))) == 0 && strings.ContainsFunc(f, func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
	})
}

// HostNames lists the host names a Service asks for in
// kube-vip.io/loadbalancerIPs (or spec.loadBalancerIP), without parsing
// the rest.
func HostNames(svc *corev1.Service) (names []string, rest string) {
	raw := strings.TrimSpace(svc.Annotations[AnnotationLoadBalancerIPs])
	if raw == "" {
		raw = strings.TrimSpace(svc.Spec.LoadBalancerIP)
	}
	return splitNames(raw)
}

// parseVLAN reads kube-vip.io/serviceVLAN: a VLAN id, or parent.id.
func (s *Service) parseVLAN(svc *corev1.Service) {
	v := strings.TrimSpace(svc.Annotations[AnnotationServiceVLAN])
	if v == "" {
		return
	}
	parent, idText := "", v
	if i := strings.LastIndex(v, "."); i >= 0 {
		parent, idText = v[:i], v[i+1:]
	}
	id, err := strconv.Atoi(idText)
	if err != nil || id < 1 || id > 4094 || (parent != "" && !validInterfaceName(v)) {
		s.problem(ReasonInvalidAnnotation, AnnotationServiceVLAN, "%q is neither a VLAN id (1-4094) nor <interface>.<id>; using no VLAN", v)
		return
	}
	s.VLAN = VLANRef{Parent: parent, ID: id}
}

// KubevipAnnotations are the kube-vip.io annotations vigil reads on a
// Service (kube-vip.io/vipHost, hwaddr and requestedIP it also writes).
func KubevipAnnotations() []string {
	return []string{
		AnnotationLoadBalancerIPs, AnnotationIgnore, AnnotationVIPHost, AnnotationHostname,
		AnnotationHWAddr, AnnotationRequestedIP, AnnotationForwardUPNP, AnnotationUPnPLease,
		AnnotationWithoutEndpoints, AnnotationServiceInterface, AnnotationServiceVLAN,
		AnnotationLeaseName, AnnotationForcePerService, AnnotationDHCPBroadcast,
		AnnotationRPFilter, AnnotationMacvlanName,
	}
}

package kube

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations that choose a pool or allow sharing an address (vigil's own
// and MetalLB's), read by the allocator.
const (
	AnnotationPool        = "vigil.io/ip-pool"
	AnnotationMetalLBPool = "metallb.universe.tf/address-pool"
	AnnotationMetalLBNew  = "metallb.io/address-pool"
	AnnotationShare       = "vigil.io/allow-shared-ip"
	AnnotationMetalLBShr  = "metallb.universe.tf/allow-shared-ip"
	// AnnotationAllocatedFrom records the pool(s) the allocator took the
	// Service's addresses from (written by pkg/ipam).
	AnnotationAllocatedFrom = "vigil.io/allocated-from"
	// AnnotationUPnPLease sets how long each UPnP mapping is leased (a Go
	// duration like 30m, or seconds, at least a minute).
	AnnotationUPnPLease = "kube-vip.io/upnp-lease-duration"
	// DefaultUPnPLease is the UPnP mapping lease when none is asked for.
	DefaultUPnPLease = time.Hour
)

// Service is what one Service asks of vigil, parsed once per
// resourceVersion (see Models). It holds no pointer into the API object.
type Service struct {
	Key        string // namespace/name
	Namespace  string
	Name       string
	UID        types.UID
	Version    string // the resourceVersion it was parsed from
	Generation int64
	Created    time.Time

	// LoadBalancer: spec.type is LoadBalancer and the Service is not being
	// deleted. Handled: also vigil's class and not kube-vip.io/ignore'd.
	LoadBalancer bool
	Handled      bool

	Addrs []netip.Addr // static VIPs, sorted and unique (host names' addresses added by Models)
	// Names are the host names among the addresses asked for (kube-vip
	// resolves them; dns_mode picks which addresses).
	Names []string
	DHCP  DHCPRequest
	Ports []Port
	Local bool // externalTrafficPolicy: Local
	// WithoutEndpoints: Cluster policy and
	// kube-vip.io/allow-reconcile-without-endpoints: announce although no
	// endpoint is ready.
	WithoutEndpoints bool
	// Interface: kube-vip.io/serviceInterface ("" default, "auto" by
	// subnet, else a link name).
	Interface string
	// VLAN: kube-vip.io/serviceVLAN (wins over Interface).
	VLAN VLANRef
	// Lease: kube-vip.io/leaseName (zero: none); ForcePerService:
	// kube-vip.io/forcePerServiceElection.
	Lease           LeaseRef
	ForcePerService bool
	Families        []corev1.IPFamily
	FamilyPolicy    corev1.IPFamilyPolicy
	Pool            string // pool asked for by annotation
	// AllocatedFrom is the pool the allocator took the addresses from
	// (first of vigil.io/allocated-from).
	AllocatedFrom string
	SharingKey    string // allow-shared-ip annotation
	UPnP          UPnPRequest

	// What the Service shows today.
	Ingress []netip.Addr
	VIPHost string // kube-vip.io/vipHost

	// Problems are the malformed parts, each a Warning Event.
	Problems []Problem
}

// DHCPRequest is a Service's ask for an address from DHCP (0.0.0.0 / ::).
type DHCPRequest struct {
	V4, V6    bool             // it asked for 0.0.0.0 (V4) and/or :: (V6)
	MAC       net.HardwareAddr // kube-vip.io/hwaddr, else derived from the UID
	Hostname  string           // option 12
	Requested []netip.Addr     // kube-vip.io/requestedIP: at most one per family
	Broadcast bool             // kube-vip.io/dhcp-broadcast: BOOTP broadcast flag
	RPFilter  *int             // kube-vip.io/rp_filter on the macvlan (nil: leave it)
	Macvlan   string           // kube-vip.io/macvlanName ("": vglm<hash>)
}

// UPnPRequest is a Service's ask for port forwards on the gateway.
type UPnPRequest struct {
	Forward bool          // kube-vip.io/forwardUPNP: "true"
	Lease   time.Duration // per mapping
}

// Problem is one malformed part of a Service.
type Problem struct {
	Reason  string // Event reason, e.g. InvalidAddress
	Field   string // the field or annotation at fault
	Message string
}

func (p Problem) String() string { return p.Reason + ": " + p.Field + ": " + p.Message }

// Blocking reports whether a Problem keeps the Service from being announced
// (as opposed to a setting that fell back to its documented default).
func (p Problem) Blocking() bool {
	return p.Reason == ReasonInvalidAddress
}

// Problem reasons.
const (
	ReasonInvalidAddress    = "InvalidAddress"
	ReasonInvalidAnnotation = "InvalidAnnotation"
)

// Parse reads a Service under a class policy.
func Parse(svc *corev1.Service, class ClassPolicy) *Service {
	s := &Service{
		Key: svc.Namespace + "/" + svc.Name, Namespace: svc.Namespace, Name: svc.Name,
		UID: svc.UID, Version: svc.ResourceVersion, Generation: svc.Generation,
		Created:       svc.CreationTimestamp.Time,
		LoadBalancer:  svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.DeletionTimestamp == nil,
		Ports:         Ports(svc),
		Local:         svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		Families:      svc.Spec.IPFamilies,
		Pool:          firstAnnotation(svc, AnnotationPool, AnnotationMetalLBPool, AnnotationMetalLBNew),
		SharingKey:    firstAnnotation(svc, AnnotationShare, AnnotationMetalLBShr),
		AllocatedFrom: strings.TrimSpace(strings.Split(svc.Annotations[AnnotationAllocatedFrom], ",")[0]),
		VIPHost:       svc.Annotations[AnnotationVIPHost],
		Ingress:       ingressAddrs(svc),
		UPnP:          UPnPRequest{Lease: DefaultUPnPLease},
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		s.FamilyPolicy = *p
	}
	s.Handled = s.LoadBalancer && class.Handles(svc.Spec.LoadBalancerClass) && !Ignored(svc)
	if !s.Handled {
		return s
	}
	s.parseAddresses(svc)
	if s.DHCP.V4 || s.DHCP.V6 {
		s.parseDHCP(svc)
		s.parseDHCPTuning(svc)
	}
	s.parseUPnP(svc)
	s.parseKubevip(svc)
	return s
}

// Blocked returns the first Problem that keeps the Service from being
// announced.
func (s *Service) Blocked() (Problem, bool) {
	for _, p := range s.Problems {
		if p.Blocking() {
			return p, true
		}
	}
	return Problem{}, false
}

func (s *Service) problem(reason, field, format string, args ...any) {
	s.Problems = append(s.Problems, Problem{Reason: reason, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (s *Service) parseAddresses(svc *corev1.Service) {
	field, raw := AnnotationLoadBalancerIPs, strings.TrimSpace(svc.Annotations[AnnotationLoadBalancerIPs])
	if raw == "" {
		field, raw = "spec.loadBalancerIP", strings.TrimSpace(svc.Spec.LoadBalancerIP)
	}
	if raw == "" {
		return
	}
	names, raw := splitNames(raw)
	s.Names = names
	if len(names) > 0 && raw == "" {
		return
	}
	r, err := ParseAddresses(raw)
	switch {
	case err == nil && len(names) > 0 && (r.DHCP4 || r.DHCP6):
		s.problem(ReasonInvalidAddress, field, "0.0.0.0 or :: (DHCP) cannot be combined with host names")
	case err != nil:
		s.problem(ReasonInvalidAddress, field, "%v", err)
	case (r.DHCP4 || r.DHCP6) && len(r.Addrs) > 0:
		s.problem(ReasonInvalidAddress, field, "0.0.0.0 or :: (an address from DHCP) cannot be combined with static addresses")
	default:
		s.Addrs, s.DHCP.V4, s.DHCP.V6 = r.Addrs, r.DHCP4, r.DHCP6
	}
}

func (s *Service) parseDHCP(svc *corev1.Service) {
	s.DHCP.MAC = derivedMAC(svc.UID)
	if v := strings.TrimSpace(svc.Annotations[AnnotationHWAddr]); v != "" {
		mac, err := net.ParseMAC(v)
		if err == nil && len(mac) == 6 && mac[0]&1 == 0 {
			s.DHCP.MAC = mac
		} else {
			s.problem(ReasonInvalidAnnotation, AnnotationHWAddr, "%q is not a unicast Ethernet MAC; using %s", v, s.DHCP.MAC)
		}
	}
	s.DHCP.Hostname = svc.Name
	if v := strings.TrimSpace(svc.Annotations[AnnotationHostname]); v != "" {
		s.DHCP.Hostname = v
	}
	if v := strings.TrimSpace(svc.Annotations[AnnotationRequestedIP]); v != "" {
		req, err := parseRequested(v)
		if err != nil {
			s.problem(ReasonInvalidAnnotation, AnnotationRequestedIP, "%q: %v; asking for any", v, err)
		}
		s.DHCP.Requested = req
	}
}

// parseRequested reads kube-vip.io/requestedIP: an address, or an IPv4
// and an IPv6 address separated by a comma.
func parseRequested(v string) ([]netip.Addr, error) {
	var out []netip.Addr
	for f := range strings.SplitSeq(v, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		switch {
		case err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast():
			return nil, fmt.Errorf("%q is not a unicast address", strings.TrimSpace(f))
		case slices.ContainsFunc(out, func(o netip.Addr) bool { return o.Unmap().Is4() == a.Unmap().Is4() }):
			return nil, errors.New("more than one address of a family")
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

// DHCPMode is dhcp_mode: which families 0.0.0.0 asks DHCP for (:: always
// asks DHCPv6).
type DHCPMode string

// The dhcp_mode values; empty means DHCPModeIPv4.
const (
	DHCPModeIPv4 DHCPMode = "ipv4"
	DHCPModeIPv6 DHCPMode = "ipv6"
	DHCPModeDual DHCPMode = "dual"
)

// ParseDHCPMode reads dhcp_mode.
func ParseDHCPMode(v string) (DHCPMode, error) {
	switch m := DHCPMode(strings.TrimSpace(v)); m {
	case "", DHCPModeIPv4:
		return DHCPModeIPv4, nil
	case DHCPModeIPv6, DHCPModeDual:
		return m, nil
	}
	return "", fmt.Errorf("%q: want ipv4, ipv6 or dual", v)
}

// Families returns the DHCP families the Service leases under mode.
func (r DHCPRequest) Families(mode DHCPMode) (v4, v6 bool) {
	v4 = r.V4 && mode != DHCPModeIPv6
	v6 = r.V6 || (r.V4 && (mode == DHCPModeIPv6 || mode == DHCPModeDual))
	return v4, v6
}

// Asked reports whether the Service asks for any address from DHCP.
func (r DHCPRequest) Asked() bool { return r.V4 || r.V6 }

func (s *Service) parseUPnP(svc *corev1.Service) {
	s.UPnP.Forward = strings.EqualFold(strings.TrimSpace(svc.Annotations[AnnotationForwardUPNP]), "true")
	v := strings.TrimSpace(svc.Annotations[AnnotationUPnPLease])
	if v == "" || !s.UPnP.Forward {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		d, err = time.Duration(n)*time.Second, nerr
	}
	if err != nil || d < time.Minute {
		s.problem(ReasonInvalidAnnotation, AnnotationUPnPLease, "%q is not a duration of at least 1m; using %v", v, DefaultUPnPLease)
		return
	}
	s.UPnP.Lease = d
}

func firstAnnotation(svc *corev1.Service, keys ...string) string {
	for _, k := range keys {
		if v := strings.TrimSpace(svc.Annotations[k]); v != "" {
			return v
		}
	}
	return ""
}

func ingressAddrs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// PoolName is the pool the Service's addresses belong to, as far as the
// Service says: where the allocator took them from, else the pool it asked
// for ("" when neither is known, or s is nil).
func (s *Service) PoolName() string {
	if s == nil {
		return ""
	}
	if s.AllocatedFrom != "" {
		return s.AllocatedFrom
	}
	return s.Pool
}

// Older orders parsed Services for tie-breaks: older creation first, then
// namespace/name.
func (s *Service) Older(o *Service) bool {
	if !s.Created.Equal(o.Created) {
		return s.Created.Before(o.Created)
	}
	return s.Key < o.Key
}

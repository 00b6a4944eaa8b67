package kube_test

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-lb/vigil/pkg/kube"
)

func localPolicy(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

// The kube-vip annotations of issue 10: parsed once; a value vigil cannot
// use is an InvalidAnnotation problem and the default applies.
func TestParseKubevip(t *testing.T) {
	tests := []struct {
		name string
		svc  *corev1.Service
		want func(*kube.Service) // edits the expected base
	}{
		{"without endpoints", lbService(map[string]string{kube.AnnotationWithoutEndpoints: "True"}), func(w *kube.Service) {
			w.WithoutEndpoints = true
		}},
		{"without endpoints false", lbService(map[string]string{kube.AnnotationWithoutEndpoints: "false"}), func(*kube.Service) {}},
		{"without endpoints, Local", lbService(map[string]string{kube.AnnotationWithoutEndpoints: "true"}, localPolicy), func(w *kube.Service) {
			w.Local = true
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationWithoutEndpoints, Message: "ignored with externalTrafficPolicy Local: only a node with a ready endpoint announces"}}
		}},
		{"without endpoints, not a bool", lbService(map[string]string{kube.AnnotationWithoutEndpoints: "yes"}), func(w *kube.Service) {
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationWithoutEndpoints, Message: `"yes" is not true or false; using false`}}
		}},
		{"service interface", lbService(map[string]string{kube.AnnotationServiceInterface: " eth1 "}), func(w *kube.Service) {
			w.Interface = "eth1"
		}},
		{"service interface auto", lbService(map[string]string{kube.AnnotationServiceInterface: "auto"}), func(w *kube.Service) {
			w.Interface = "auto"
		}},
		{"service interface too long", lbService(map[string]string{kube.AnnotationServiceInterface: "a-very-long-name0"}), func(w *kube.Service) {
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationServiceInterface, Message: `"a-very-long-name0" is not an interface name; using the default interface`}}
		}},
		{"service interface with a slash", lbService(map[string]string{kube.AnnotationServiceInterface: "eth0/1"}), func(w *kube.Service) {
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationServiceInterface, Message: `"eth0/1" is not an interface name; using the default interface`}}
		}},
		{"lease name", lbService(map[string]string{kube.AnnotationLeaseName: "group"}), func(w *kube.Service) {
			w.Lease = kube.LeaseRef{Namespace: "ns", Name: "group"}
		}},
		{"lease namespace/name", lbService(map[string]string{kube.AnnotationLeaseName: "kube-system/group"}), func(w *kube.Service) {
			w.Lease = kube.LeaseRef{Namespace: "kube-system", Name: "group"}
		}},
		{"lease name, Local", lbService(map[string]string{kube.AnnotationLeaseName: "group"}, localPolicy), func(w *kube.Service) {
			w.Local = true
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationLeaseName, Message: "ignored with externalTrafficPolicy Local: the Service keeps its own Lease"}}
		}},
		{"lease name invalid", lbService(map[string]string{kube.AnnotationLeaseName: "Bad_Name"}), func(w *kube.Service) {
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationLeaseName, Message: `"Bad_Name" is not a Lease name or namespace/name; using the default Lease`}}
		}},
		{"force per-service election", lbService(map[string]string{kube.AnnotationForcePerService: "true"}), func(w *kube.Service) {
			w.ForcePerService = true
		}},
		{"dhcp broadcast and rp_filter", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0", kube.AnnotationDHCPBroadcast: "true", kube.AnnotationRPFilter: "2"}), func(w *kube.Service) {
			w.DHCP = kube.DHCPRequest{V4: true, MAC: derivedOf(w), Hostname: "web", Broadcast: true, RPFilter: ptr(2)}
		}},
		{"dhcp broadcast and rp_filter invalid", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0", kube.AnnotationDHCPBroadcast: "on", kube.AnnotationRPFilter: "3"}), func(w *kube.Service) {
			w.DHCP = kube.DHCPRequest{V4: true, MAC: derivedOf(w), Hostname: "web"}
			w.Problems = []kube.Problem{
				{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationDHCPBroadcast, Message: `"on" is not true or false; using false`},
				{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationRPFilter, Message: `"3" is not 0, 1 or 2; leaving rp_filter as it is`},
			}
		}},
		{"macvlan name", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0", kube.AnnotationMacvlanName: "shared0"}), func(w *kube.Service) {
			w.DHCP = kube.DHCPRequest{V4: true, MAC: derivedOf(w), Hostname: "web", Macvlan: "shared0"}
		}},
		{"macvlan name invalid", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0", kube.AnnotationMacvlanName: "a/b"}), func(w *kube.Service) {
			w.DHCP = kube.DHCPRequest{V4: true, MAC: derivedOf(w), Hostname: "web"}
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationMacvlanName, Message: `"a/b" is not an interface name; using the Service's own macvlan`}}
		}},
		{"host names", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "Web.Lab, 198.18.0.10, db.lab."}), func(w *kube.Service) {
			w.Names, w.Addrs = []string{"db.lab.", "web.lab"}, addrs("198.18.0.10")
		}},
		{"host name only", lbService(nil, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "web.lab" }), func(w *kube.Service) {
			w.Names = []string{"web.lab"}
		}},
		{"digits are an address, not a name", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "198.18.0.300"}), func(w *kube.Service) {
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAddress, Field: kube.AnnotationLoadBalancerIPs, Message: `invalid address "198.18.0.300"`}}
		}},
		{"host name with DHCP", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "web.lab,0.0.0.0"}), func(w *kube.Service) {
			w.Names = []string{"web.lab"}
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAddress, Field: kube.AnnotationLoadBalancerIPs, Message: "0.0.0.0 or :: (DHCP) cannot be combined with host names"}}
		}},
		{"vlan id", lbService(map[string]string{kube.AnnotationServiceVLAN: "200"}), func(w *kube.Service) {
			w.VLAN = kube.VLANRef{ID: 200}
		}},
		{"vlan parent.id", lbService(map[string]string{kube.AnnotationServiceVLAN: "eth0.200"}), func(w *kube.Service) {
			w.VLAN = kube.VLANRef{Parent: "eth0", ID: 200}
		}},
		{"vlan id out of range", lbService(map[string]string{kube.AnnotationServiceVLAN: "eth0.4095"}), func(w *kube.Service) {
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationServiceVLAN, Message: `"eth0.4095" is neither a VLAN id (1-4094) nor <interface>.<id>; using no VLAN`}}
		}},
		{"rp_filter without DHCP is not read", lbService(map[string]string{kube.AnnotationRPFilter: "9"}), func(*kube.Service) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := &kube.Service{Key: "ns/web", Namespace: "ns", Name: "web", UID: "uid-1", Version: "7",
				LoadBalancer: true, Handled: true, Ports: []kube.Port{{Port: 80, Protocol: corev1.ProtocolTCP}},
				UPnP: kube.UPnPRequest{Lease: time.Hour}}
			tt.want(want)
			got := kube.Parse(tt.svc, legacy)
			if d := cmp.Diff(want, got, cmpAddr, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("Parse (-want +got):\n%s", d)
			}
		})
	}
}

// enable_endpoints: v1 Endpoints give the same view as EndpointSlices.
func TestReadyFromEndpoints(t *testing.T) {
	addr := func(node *string) corev1.EndpointAddress {
		return corev1.EndpointAddress{IP: "10.0.0.1", NodeName: node}
	}
	tests := []struct {
		name string
		eps  []*corev1.Endpoints
		want kube.Ready
	}{
		{"none", nil, kube.Ready{}},
		{"ready", []*corev1.Endpoints{{Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{addr(ptr("a"))}}}}},
			kube.Ready{Any: true, Nodes: map[string]bool{"a": true}}},
		{"not ready", []*corev1.Endpoints{{Subsets: []corev1.EndpointSubset{{NotReadyAddresses: []corev1.EndpointAddress{addr(ptr("a"))}}}}}, kube.Ready{}},
		{"mixed subsets", []*corev1.Endpoints{{Subsets: []corev1.EndpointSubset{
			{NotReadyAddresses: []corev1.EndpointAddress{addr(ptr("a"))}},
			{Addresses: []corev1.EndpointAddress{addr(ptr("b")), addr(nil)}},
		}}}, kube.Ready{Any: true, Nodes: map[string]bool{"b": true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, kube.ReadyFromEndpoints(tt.eps), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("ReadyFromEndpoints (-want +got):\n%s", d)
			}
		})
	}
}

// derivedOf is the MAC a Service parsed from lbService gets by default.
func derivedOf(*kube.Service) net.HardwareAddr {
	return kube.Parse(lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0"}), legacy).DHCP.MAC
}

// Models adds a Service's host names' addresses, as resolved now, and
// again after Invalidate.
func TestModelsResolve(t *testing.T) {
	m := kube.NewModels(legacy)
	now := map[string][]netip.Addr{"web.lab": addrs("198.18.0.20")}
	m.Resolve(func(n string) []netip.Addr { return now[n] })
	svc := lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "web.lab,198.18.0.10"})
	if diff := cmp.Diff(addrs("198.18.0.10", "198.18.0.20"), m.Get(svc).Addrs, cmpAddr); diff != "" {
		t.Errorf("Addrs (-want +got):\n%s", diff)
	}
	now["web.lab"] = addrs("198.18.0.30")
	if got := m.Get(svc); !slices.Contains(got.Addrs, netip.MustParseAddr("198.18.0.20")) {
		t.Errorf("changed without Invalidate: %v", got.Addrs)
	}
	m.Invalidate()
	if diff := cmp.Diff(addrs("198.18.0.10", "198.18.0.30"), m.Get(svc).Addrs, cmpAddr); diff != "" {
		t.Errorf("after Invalidate: Addrs (-want +got):\n%s", diff)
	}
}

package kube_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-lb/vigil/pkg/kube"
)

// TestClassPolicy is the class matrix of docs/configuration.md: the agents
// and the allocator both decide with ClassPolicy.Handles.
func TestClassPolicy(t *testing.T) {
	const ours, other = "example.com/ours", "example.com/other"
	policies := map[string]kube.ClassPolicy{
		"legacy":      {Name: ours, Legacy: true},
		"strict":      {Name: ours},
		"only":        {Name: ours, Only: true},
		"only+legacy": {Name: ours, Legacy: true, Only: true},
	}
	classes := map[string]*string{"none": nil, "ours": ptr(ours), "other": ptr(other), "empty": ptr(""), "default": ptr("default")}
	want := map[string]map[string]bool{
		"legacy":      {"none": true, "ours": true, "other": false, "empty": false, "default": true},
		"strict":      {"none": false, "ours": true, "other": false, "empty": false, "default": false},
		"only":        {"none": false, "ours": true, "other": false, "empty": false, "default": false},
		"only+legacy": {"none": false, "ours": true, "other": false, "empty": false, "default": false},
	}
	got := map[string]map[string]bool{}
	for pn, p := range policies {
		got[pn] = map[string]bool{}
		for cn, c := range classes {
			got[pn][cn] = p.Handles(c)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Handles[policy][class] (-want +got):\n%s", d)
	}
}

var legacy = kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}

func lbService(annotations map[string]string, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-1", ResourceVersion: "7", Annotations: annotations},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func TestParse(t *testing.T) {
	derived := kube.Parse(lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0"}), legacy).DHCP.MAC
	tests := []struct {
		name string
		svc  *corev1.Service
		want func(*kube.Service) // edits the expected base
	}{
		{"static", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "198.18.0.10"}), func(w *kube.Service) {
			w.Addrs = addrs("198.18.0.10")
		}},
		{"spec.loadBalancerIP", lbService(nil, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.18.0.11" }), func(w *kube.Service) {
			w.Addrs = addrs("198.18.0.11")
		}},
		{"bad address", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "198.18.0.300"}), func(w *kube.Service) {
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAddress, Field: kube.AnnotationLoadBalancerIPs, Message: `invalid address "198.18.0.300"`}}
		}},
		{"dhcpv6", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "::"}), func(w *kube.Service) {
			w.DHCP = kube.DHCPRequest{V6: true, MAC: derived, Hostname: "web"}
		}},
		{"dhcp dual", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0,::", kube.AnnotationRequestedIP: "fd00:1ab::201, 198.18.0.201"}), func(w *kube.Service) {
			w.DHCP = kube.DHCPRequest{V4: true, V6: true, MAC: derived, Hostname: "web", Requested: addrs("fd00:1ab::201", "198.18.0.201")}
		}},
		{"dhcpv6 with static", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "::,fd00:1ab::10"}), func(w *kube.Service) {
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAddress, Field: kube.AnnotationLoadBalancerIPs, Message: "0.0.0.0 or :: (an address from DHCP) cannot be combined with static addresses"}}
		}},
		{"dhcp with static", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0,198.18.0.10"}), func(w *kube.Service) {
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAddress, Field: kube.AnnotationLoadBalancerIPs, Message: "0.0.0.0 or :: (an address from DHCP) cannot be combined with static addresses"}}
		}},
		{"dhcp defaults", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0"}), func(w *kube.Service) {
			w.DHCP = kube.DHCPRequest{V4: true, MAC: derived, Hostname: "web"}
		}},
		{"dhcp annotations", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0", kube.AnnotationHWAddr: "02:00:00:00:aa:01",
			kube.AnnotationHostname: "shop", kube.AnnotationRequestedIP: "198.18.0.201"}), func(w *kube.Service) {
			w.DHCP = kube.DHCPRequest{V4: true, MAC: mac("02:00:00:00:aa:01"), Hostname: "shop", Requested: addrs("198.18.0.201")}
		}},
		{"dhcp bad annotations fall back, loudly", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0", kube.AnnotationHWAddr: "01:00:5e:00:00:01",
			kube.AnnotationRequestedIP: "198.18.0.9,198.18.0.10"}), func(w *kube.Service) {
			w.DHCP = kube.DHCPRequest{V4: true, MAC: derived, Hostname: "web"}
			w.Problems = []kube.Problem{
				{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationHWAddr, Message: `"01:00:5e:00:00:01" is not a unicast Ethernet MAC; using ` + derived.String()},
				{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationRequestedIP, Message: `"198.18.0.9,198.18.0.10": more than one address of a family; asking for any`},
			}
		}},
		{"dhcp requestedIP not unicast", lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "::", kube.AnnotationRequestedIP: "fe80::1"}), func(w *kube.Service) {
			w.DHCP = kube.DHCPRequest{V6: true, MAC: derived, Hostname: "web"}
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationRequestedIP, Message: `"fe80::1": "fe80::1" is not a unicast address; asking for any`}}
		}},
		{"upnp", lbService(map[string]string{kube.AnnotationForwardUPNP: "True", kube.AnnotationUPnPLease: "30m"}), func(w *kube.Service) {
			w.UPnP = kube.UPnPRequest{Forward: true, Lease: 30 * time.Minute}
		}},
		{"upnp seconds", lbService(map[string]string{kube.AnnotationForwardUPNP: "true", kube.AnnotationUPnPLease: "120"}), func(w *kube.Service) {
			w.UPnP = kube.UPnPRequest{Forward: true, Lease: 2 * time.Minute}
		}},
		{"upnp bad lease", lbService(map[string]string{kube.AnnotationForwardUPNP: "true", kube.AnnotationUPnPLease: "10s"}), func(w *kube.Service) {
			w.UPnP = kube.UPnPRequest{Forward: true, Lease: time.Hour}
			w.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationUPnPLease, Message: `"10s" is not a duration of at least 1m; using 1h0m0s`}}
		}},
		{"pool and sharing", lbService(map[string]string{kube.AnnotationMetalLBPool: "small", kube.AnnotationMetalLBShr: "k"}), func(w *kube.Service) {
			w.Pool, w.SharingKey = "small", "k"
		}},
		{"ignored", lbService(map[string]string{kube.AnnotationIgnore: "true", kube.AnnotationLoadBalancerIPs: "bogus"}), func(w *kube.Service) {
			w.Handled = false
		}},
		{"other class", lbService(nil, func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("x") }), func(w *kube.Service) {
			w.Handled = false
		}},
		{"ClusterIP", lbService(nil, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }), func(w *kube.Service) {
			w.Handled, w.LoadBalancer = false, false
		}},
		{"local, ingress, vipHost", lbService(map[string]string{kube.AnnotationVIPHost: "node-a"}, func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.0.10"}, {Hostname: "x"}}
		}), func(w *kube.Service) {
			w.Local, w.VIPHost, w.Ingress = true, "node-a", addrs("198.18.0.10")
		}},
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

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestDerivedMAC(t *testing.T) {
	parse := func(uid string) net.HardwareAddr {
		s := lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "0.0.0.0"})
		s.UID = types.UID("uid-" + uid)
		return kube.Parse(s, legacy).DHCP.MAC
	}
	a, b := parse("1"), parse("2")
	if a.String() == b.String() {
		t.Errorf("two UIDs, one MAC %s", a)
	}
	if again := parse("1"); again.String() != a.String() {
		t.Errorf("derived MAC not stable: %s then %s", a, again)
	}
	if a[0]&1 != 0 || a[0]&2 == 0 {
		t.Errorf("derived MAC %s is not locally administered unicast", a)
	}
}

func TestModelsCache(t *testing.T) {
	m := kube.NewModels(legacy)
	s := lbService(map[string]string{kube.AnnotationLoadBalancerIPs: "198.18.0.10"})
	first := m.Get(s)
	if again := m.Get(s.DeepCopy()); again != first {
		t.Error("same resourceVersion parsed twice")
	}
	s.ResourceVersion = "8"
	s.Annotations[kube.AnnotationLoadBalancerIPs] = "198.18.0.11"
	if got := m.Get(s); got == first || got.Addrs[0] != netip.MustParseAddr("198.18.0.11") {
		t.Errorf("new resourceVersion not parsed again: %v", got.Addrs)
	}
	m.Forget("ns/web")
	if got := m.Get(s); got.Version != "8" {
		t.Errorf("after Forget: version %q", got.Version)
	}
}

func TestOlder(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := func(key string, at time.Time) *kube.Service { return &kube.Service{Key: key, Created: at} }
	tests := []struct {
		name string
		a, b *kube.Service
		want bool
	}{
		{"created earlier", s("z/z", t0), s("a/a", t0.Add(time.Second)), true},
		{"created later", s("a/a", t0.Add(time.Second)), s("z/z", t0), false},
		{"same time, key first", s("a/z", t0), s("b/a", t0), true},
		{"same time, key later", s("b/a", t0), s("a/z", t0), false},
		{"itself", s("ns/a", t0), s("ns/a", t0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Older(tt.b); got != tt.want {
				t.Errorf("Older = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadyEndpoints(t *testing.T) {
	ep := func(node *string, ready *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, NodeName: node, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	}
	slice := func(eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{Endpoints: eps}
	}
	tests := []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   kube.Ready
	}{
		{"no slices", nil, kube.Ready{}},
		{"ready", []*discoveryv1.EndpointSlice{slice(ep(ptr("a"), ptr(true)))}, kube.Ready{Any: true, Nodes: map[string]bool{"a": true}}},
		{"nil ready counts", []*discoveryv1.EndpointSlice{slice(ep(ptr("a"), nil))}, kube.Ready{Any: true, Nodes: map[string]bool{"a": true}}},
		{"not ready", []*discoveryv1.EndpointSlice{slice(ep(ptr("a"), ptr(false)))}, kube.Ready{}},
		{"two slices", []*discoveryv1.EndpointSlice{slice(ep(ptr("a"), ptr(false))), slice(ep(ptr("b"), ptr(true)))},
			kube.Ready{Any: true, Nodes: map[string]bool{"b": true}}},
		{"no node name", []*discoveryv1.EndpointSlice{slice(ep(nil, ptr(true)), ep(ptr(""), ptr(true)))}, kube.Ready{Any: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, kube.ReadyEndpoints(tt.slices), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("ReadyEndpoints (-want +got):\n%s", d)
			}
		})
	}
}

func TestNodeExcluded(t *testing.T) {
	node := func(labels map[string]string, conds ...corev1.NodeCondition) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Status: corev1.NodeStatus{Conditions: conds}}
	}
	tests := []struct {
		name string
		n    *corev1.Node
		want string
	}{
		{"plain", node(nil), ""},
		{"label (any value)", node(map[string]string{kube.LabelExcludeFromLB: ""}), "label " + kube.LabelExcludeFromLB},
		{"network unavailable", node(nil, corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue}), "condition NetworkUnavailable"},
		{"network available", node(nil, corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kube.NodeExcluded(tt.n); got != tt.want {
				t.Errorf("NodeExcluded = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDHCPFamilies(t *testing.T) {
	for _, tt := range []struct {
		r      kube.DHCPRequest
		mode   kube.DHCPMode
		v4, v6 bool
	}{
		{kube.DHCPRequest{V4: true}, kube.DHCPModeIPv4, true, false},
		{kube.DHCPRequest{V4: true}, kube.DHCPModeIPv6, false, true},
		{kube.DHCPRequest{V4: true}, kube.DHCPModeDual, true, true},
		{kube.DHCPRequest{V6: true}, kube.DHCPModeIPv4, false, true},
		{kube.DHCPRequest{V6: true}, kube.DHCPModeIPv6, false, true},
		{kube.DHCPRequest{V4: true, V6: true}, kube.DHCPModeIPv4, true, true},
		{kube.DHCPRequest{V4: true, V6: true}, kube.DHCPModeIPv6, false, true},
		{kube.DHCPRequest{}, kube.DHCPModeDual, false, false},
	} {
		if v4, v6 := tt.r.Families(tt.mode); v4 != tt.v4 || v6 != tt.v6 {
			t.Errorf("V4 %t V6 %t under %s: families %t/%t, want %t/%t", tt.r.V4, tt.r.V6, tt.mode, v4, v6, tt.v4, tt.v6)
		}
	}
}

func TestParseDHCPMode(t *testing.T) {
	for in, want := range map[string]kube.DHCPMode{"": kube.DHCPModeIPv4, "ipv4": kube.DHCPModeIPv4, " ipv6 ": kube.DHCPModeIPv6, "dual": kube.DHCPModeDual} {
		if got, err := kube.ParseDHCPMode(in); err != nil || got != want {
			t.Errorf("ParseDHCPMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := kube.ParseDHCPMode("IPv6"); err == nil {
		t.Error(`ParseDHCPMode("IPv6"): no error (kube-vip's values are lower case)`)
	}
}

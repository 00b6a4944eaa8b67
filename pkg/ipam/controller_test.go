package ipam

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// kube-router's class rules: by default no class, "default" and vigil's
// class; with the default class off only vigil's; never another class, an
// ignored Service or another type.
func TestHandles(t *testing.T) {
	svc := func(class string, mutate ...func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
		if class != "" {
			s.Spec.LoadBalancerClass = &class
		}
		for _, m := range mutate {
			m(s)
		}
		return s
	}
	ignored := func(s *corev1.Service) { s.Annotations[kube.AnnotationIgnore] = "true" }
	nodePort := func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }
	tests := []struct {
		name         string
		svc          *corev1.Service
		withDefault  bool
		withoutDeflt bool
	}{
		{"no class", svc(""), true, false},
		{"class default", svc("default"), true, false},
		{"vigil's class", svc(kube.DefaultClass), true, true},
		{"another class", svc("example.com/other"), false, false},
		{"ignored", svc("", ignored), false, false},
		{"ignored, our class", svc(kube.DefaultClass, ignored), false, false},
		{"not a LoadBalancer", svc("", nodePort), false, false},
	}
	for _, tt := range tests {
		on := &Controller{cfg: Config{ClassName: kube.DefaultClass, DefaultClass: true}}
		off := &Controller{cfg: Config{ClassName: kube.DefaultClass, DefaultClass: false}}
		if got := on.handles(tt.svc); got != tt.withDefault {
			t.Errorf("%s, default class on: handles = %v, want %v", tt.name, got, tt.withDefault)
		}
		if got := off.handles(tt.svc); got != tt.withoutDeflt {
			t.Errorf("%s, default class off: handles = %v, want %v", tt.name, got, tt.withoutDeflt)
		}
	}
}

func TestFamilies(t *testing.T) {
	pol := func(p corev1.IPFamilyPolicy) *corev1.IPFamilyPolicy { return &p }
	tests := []struct {
		name       string
		fams       []corev1.IPFamily
		policy     *corev1.IPFamilyPolicy
		want       []allocator.Family
		wantPolicy allocator.FamilyPolicy
	}{
		{"unset", nil, nil, []allocator.Family{allocator.IPv4}, allocator.SingleStack},
		{"IPv6", []corev1.IPFamily{corev1.IPv6Protocol}, nil, []allocator.Family{allocator.IPv6}, allocator.SingleStack},
		{"require dual", []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}, pol(corev1.IPFamilyPolicyRequireDualStack),
			[]allocator.Family{allocator.IPv4, allocator.IPv6}, allocator.RequireDualStack},
	}
	for _, tt := range tests {
		s := &corev1.Service{Spec: corev1.ServiceSpec{IPFamilies: tt.fams, IPFamilyPolicy: tt.policy}}
		got, p := families(s)
		if len(got) != len(tt.want) || p != tt.wantPolicy {
			t.Errorf("%s: families = %v %v, want %v %v", tt.name, got, p, tt.want, tt.wantPolicy)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: families = %v, want %v", tt.name, got, tt.want)
			}
		}
	}
}

// kube-vip-cloud-provider's keys become pools; a broken key does not stop
// the others.
func TestConfigMapPools(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kubevip"}, Data: map[string]string{
		"cidr-global":        "192.168.0.200/29",
		"range-global":       "192.168.0.210-192.168.0.211",
		"range-team":         "192.168.1.10-192.168.1.12",
		"cidr-broken":        "not-a-cidr",
		"allow-share-team":   "true",
		"allow-share-nobody": "false",
		"unrelated-key":      "x",
	}}
	pools, share, errs := configMapPools(cm)
	if len(errs) != 1 {
		t.Errorf("errors = %v, want one for cidr-broken", errs)
	}
	if len(share) != 1 || share[0] != "team" {
		t.Errorf("share = %v, want [team]", share)
	}
	byName := map[string]allocator.Pool{}
	for _, p := range pools {
		byName[p.Name] = p
	}
	g, ok := byName["kubevip-cm-global"]
	if !ok || len(g.Ranges) != 2 || len(g.Namespaces) != 0 || !g.AutoAssign {
		t.Errorf("global pool = %+v", g)
	}
	team, ok := byName["kubevip-cm-team"]
	if !ok || len(team.Namespaces) != 1 || team.Namespaces[0] != "team" || team.Priority >= g.Priority {
		t.Errorf("team pool = %+v, want namespace team, preferred over global", team)
	}
}

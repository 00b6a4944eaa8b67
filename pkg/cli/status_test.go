package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func lbService(ns, name string, change func(*corev1.Service)) corev1.Service {
	s := corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
	}
	if change != nil {
		change(&s)
	}
	return s
}

func lease(ns, name, holder string, renewed *time.Time) coordinationv1.Lease {
	l := coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if holder != "-" {
		l.Spec.HolderIdentity = &holder
	}
	if renewed != nil {
		l.Spec.RenewTime = &metav1.MicroTime{Time: *renewed}
	}
	return l
}

func announced(status metav1.ConditionStatus, reason string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Status.Conditions = append(s.Status.Conditions,
			metav1.Condition{Type: "other.io/Ready", Status: metav1.ConditionTrue, Reason: "Other"},
			metav1.Condition{Type: "vigil.io/Announced", Status: status, Reason: reason})
	}
}

func TestStatusRows(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	tests := []struct {
		name   string
		svcs   []corev1.Service
		leases []coordinationv1.Lease
		want   []statusRow
	}{
		{
			name: "no services",
		},
		{
			name: "only LoadBalancer services",
			svcs: []corev1.Service{
				lbService("default", "cluster-ip", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }),
				lbService("default", "node-port", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }),
				lbService("default", "web", nil),
			},
			want: []statusRow{{"default", "web", "-", "-", "-", "Pending"}},
		},
		{
			name: "announced with a fresh lease",
			svcs: []corev1.Service{lbService("default", "web", func(s *corev1.Service) {
				s.Annotations = map[string]string{"kube-vip.io/loadbalancerIPs": "192.0.2.10"}
				announced(metav1.ConditionTrue, "Announced")(s)
			})},
			leases: []coordinationv1.Lease{lease("default", "kubevip-web", "node-a", ago(2*time.Second))},
			want:   []statusRow{{"default", "web", "192.0.2.10", "node-a", "2s", "Announced"}},
		},
		{
			name: "annotation wins over spec and status; list normalized",
			svcs: []corev1.Service{lbService("default", "web", func(s *corev1.Service) {
				s.Annotations = map[string]string{"kube-vip.io/loadbalancerIPs": " 192.0.2.10, 2001:db8::10 ,"}
				s.Spec.LoadBalancerIP = "192.0.2.99"
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.98"}}
			})},
			want: []statusRow{{"default", "web", "192.0.2.10,2001:db8::10", "-", "-", "Pending"}},
		},
		{
			name: "spec.loadBalancerIP when the annotation is blank",
			svcs: []corev1.Service{lbService("default", "web", func(s *corev1.Service) {
				s.Annotations = map[string]string{"kube-vip.io/loadbalancerIPs": " "}
				s.Spec.LoadBalancerIP = "192.0.2.11"
			})},
			want: []statusRow{{"default", "web", "192.0.2.11", "-", "-", "Pending"}},
		},
		{
			name: "status ingress as a last resort",
			svcs: []corev1.Service{lbService("default", "web", func(s *corev1.Service) {
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.12"}, {Hostname: "lb.example"}, {IP: "2001:db8::12"}}
			})},
			want: []statusRow{{"default", "web", "192.0.2.12,2001:db8::12", "-", "-", "Pending"}},
		},
		{
			name: "reasons from a false condition",
			svcs: []corev1.Service{
				lbService("a", "collide", announced(metav1.ConditionFalse, "PortCollision")),
				lbService("a", "empty", announced(metav1.ConditionFalse, "NoAddress")),
				lbService("a", "bad", announced(metav1.ConditionFalse, "InvalidAddress")),
				lbService("a", "down", announced(metav1.ConditionFalse, "NoEligibleNode")),
				lbService("a", "unknown", announced(metav1.ConditionUnknown, "")),
			},
			want: []statusRow{
				{"a", "bad", "-", "-", "-", "InvalidAddress"},
				{"a", "collide", "-", "-", "-", "PortCollision"},
				{"a", "down", "-", "-", "-", "NoEligibleNode"},
				{"a", "empty", "-", "-", "-", "NoAddress"},
				{"a", "unknown", "-", "-", "-", "NotAnnounced"},
			},
		},
		{
			name: "lease ages, empty holders and foreign leases",
			svcs: []corev1.Service{
				lbService("a", "five-minutes", nil),
				lbService("a", "released", nil),
				lbService("a", "never-renewed", nil),
				lbService("a", "ahead", nil),
				lbService("b", "elsewhere", nil),
			},
			leases: []coordinationv1.Lease{
				lease("a", "kubevip-five-minutes", "node-b", ago(5*time.Minute+20*time.Second)),
				lease("a", "kubevip-released", "", ago(3*time.Hour)),
				lease("a", "kubevip-never-renewed", "node-c", nil),
				lease("a", "kubevip-ahead", "node-d", ago(-3*time.Second)),
				lease("a", "kubevip-elsewhere", "node-e", ago(time.Second)),
				lease("b", "elsewhere", "node-f", ago(time.Second)),
			},
			want: []statusRow{
				{"a", "ahead", "-", "node-d", "0s", "Pending"},
				{"a", "five-minutes", "-", "node-b", "5m", "Pending"},
				{"a", "never-renewed", "-", "node-c", "-", "Pending"},
				{"a", "released", "-", "-", "3h", "Pending"},
				{"b", "elsewhere", "-", "-", "-", "Pending"},
			},
		},
		{
			name: "sorted by namespace, then name",
			svcs: []corev1.Service{lbService("b", "a", nil), lbService("a", "b", nil), lbService("a", "a", nil)},
			want: []statusRow{
				{"a", "a", "-", "-", "-", "Pending"},
				{"a", "b", "-", "-", "-", "Pending"},
				{"b", "a", "-", "-", "-", "Pending"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := statusRows(tt.svcs, tt.leases, now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderStatus(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	renewed := now.Add(-2 * time.Second)
	svcs := []corev1.Service{
		lbService("default", "web", func(s *corev1.Service) {
			s.Annotations = map[string]string{"kube-vip.io/loadbalancerIPs": "192.0.2.10"}
			announced(metav1.ConditionTrue, "Announced")(s)
		}),
		lbService("kube-system", "dns", announced(metav1.ConditionFalse, "NoEligibleNode")),
	}
	leases := []coordinationv1.Lease{lease("default", "kubevip-web", "node-a", &renewed)}
	var out bytes.Buffer
	if err := renderStatus(&out, svcs, leases, now); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"NAMESPACE     SERVICE   VIP(S)       HOLDER   LEASE AGE   STATE",
		"default       web       192.0.2.10   node-a   2s          Announced",
		"kube-system   dns       -            -        -           NoEligibleNode",
		"",
	}, "\n")
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestStatusFlags(t *testing.T) {
	root := newRoot()
	root.SetArgs([]string{"status", "-n", "default", "-A"})
	root.SetOut(&bytes.Buffer{})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "either --namespace or --all-namespaces") {
		t.Fatalf("status -n -A: error = %v", err)
	}
}

func TestStatusKubeconfigFromEnvironment(t *testing.T) {
	t.Setenv("k8s_config_file", "/nonexistent/vigil-test-kubeconfig")
	root := newRoot()
	root.SetArgs([]string{"status"})
	root.SetOut(&bytes.Buffer{})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/vigil-test-kubeconfig") {
		t.Fatalf("status with k8s_config_file: error = %v, want it to name the file", err)
	}
}

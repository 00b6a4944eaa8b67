package cli

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
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
	if err := renderStatus(&out, svcs, leases, nil, nil, now); err != nil {
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

func TestPeerRows(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	up := nodestatus.Peer{Peer: "198.18.0.254", ASN: 65001, State: "established", Since: now.Add(-5*time.Minute - 20*time.Second), Prefixes: 3}
	tests := []struct {
		name  string
		nodes []nodestatus.Node
		want  []peerRow
	}{
		{name: "no nodes"},
		{
			name:  "one session up",
			nodes: []nodestatus.Node{{Name: "node1", Peers: []nodestatus.Peer{up}}},
			want:  []peerRow{{"node1", "198.18.0.254", "65001", "established", "5m20s", "3", "-"}},
		},
		{
			name: "peers sorted per node; down, never seen and ahead of this clock",
			nodes: []nodestatus.Node{
				{Name: "node1", Peers: []nodestatus.Peer{
					{Peer: "fd00:1ab::fe", ASN: 4200000000, State: "active", Since: now.Add(-90 * time.Second), LastError: "hold timer expired"},
					{Peer: "198.18.0.253", ASN: 65002, State: "idle"},
					{Peer: "198.18.0.254", ASN: 65001, State: "established", Since: now.Add(3 * time.Second), Prefixes: 1},
				}},
			},
			want: []peerRow{
				{"node1", "198.18.0.253", "65002", "idle", "-", "0", "-"},
				{"node1", "198.18.0.254", "65001", "established", "0s", "1", "-"},
				{"node1", "fd00:1ab::fe", "4200000000", "active", "90s", "0", "hold timer expired"},
			},
		},
		{
			name: "a node without peers and one with an unreadable record",
			nodes: []nodestatus.Node{
				{Name: "node1", Peers: []nodestatus.Peer{}},
				{Name: "node2", Err: errors.New("nodestatus: vigil.io/bgp-peers: invalid character")},
				{Name: "node3", Peers: []nodestatus.Peer{up}},
			},
			want: []peerRow{
				{"node1", "-", "-", "NoPeers", "-", "-", "-"},
				{"node2", "-", "-", "Unknown", "-", "-", "nodestatus: vigil.io/bgp-peers: invalid character"},
				{"node3", "198.18.0.254", "65001", "established", "5m20s", "3", "-"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, peerRows(tt.nodes, now)); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

// The PEERS table follows the VIP table when nodes published sessions; a
// failed read says why; with no node records there is no table.
func TestRenderStatusPeers(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	svcs := []corev1.Service{lbService("default", "web", func(s *corev1.Service) {
		s.Annotations = map[string]string{"kube-vip.io/loadbalancerIPs": "192.0.2.10"}
		announced(metav1.ConditionTrue, "Announced")(s)
	})}
	vipTable := []string{
		"NAMESPACE   SERVICE   VIP(S)       HOLDER   LEASE AGE   STATE",
		"default     web       192.0.2.10   -        -           Announced",
	}
	nodes := []nodestatus.Node{
		{Name: "node1", Peers: []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65001, State: "established", Since: now.Add(-3 * time.Hour), Prefixes: 1}}},
		{Name: "node2", Peers: []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65001, State: "active", LastError: "connection refused"}}},
	}
	tests := []struct {
		name     string
		nodes    []nodestatus.Node
		nodesErr error
		want     []string
	}{
		{name: "no BGP", want: vipTable},
		{
			name:  "two nodes",
			nodes: nodes,
			want: append(slices.Clone(vipTable), "",
				"NODE    PEER           ASN     STATE         UPTIME   PREFIXES   LAST ERROR",
				"node1   198.18.0.254   65001   established   3h       1          -",
				"node2   198.18.0.254   65001   active        -        0          connection refused"),
		},
		{
			name:     "leases unreadable",
			nodesErr: errors.New("list node leases in kube-system: forbidden"),
			want:     append(slices.Clone(vipTable), "", "PEERS: list node leases in kube-system: forbidden"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := renderStatus(&out, svcs, nil, tt.nodes, tt.nodesErr, now); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(strings.Join(tt.want, "\n")+"\n", out.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

// listNodePeers reads only vigil's Leases of the lease namespace.
func TestListNodePeers(t *testing.T) {
	labelled := func(ns, name, peers string) *coordinationv1.Lease {
		l := lease(ns, name, "-", nil)
		l.Labels = map[string]string{"app.kubernetes.io/managed-by": "vigil"}
		l.Annotations = map[string]string{"vigil.io/bgp-peers": peers}
		return &l
	}
	foreign := labelled("kube-system", "vigil-node-node9", "[]")
	foreign.Labels = nil
	client := fake.NewClientset(
		labelled("kube-system", "vigil-node-node2", `[{"peer":"198.18.0.254","asn":65001,"state":"established","prefixes":1}]`),
		labelled("kube-system", "vigil-node-node1", "[]"),
		labelled("other", "vigil-node-node3", "[]"),
		foreign,
	)
	got, err := listNodePeers(context.Background(), kubeclienttest.Wrap(client), "kube-system")
	if err != nil {
		t.Fatal(err)
	}
	want := []nodestatus.Node{
		{Name: "node1", Peers: []nodestatus.Peer{}},
		{Name: "node2", Peers: []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65001, State: "established", Prefixes: 1}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
}

func TestStatusFlags(t *testing.T) {
	root := newRoot(program{})
	root.SetArgs([]string{"status", "-n", "default", "-A"})
	root.SetOut(&bytes.Buffer{})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "either --namespace or --all-namespaces") {
		t.Fatalf("status -n -A: error = %v", err)
	}
}

func TestStatusKubeconfigFromEnvironment(t *testing.T) {
	t.Setenv("k8s_config_file", "/nonexistent/vigil-test-kubeconfig")
	root := newRoot(program{})
	root.SetArgs([]string{"status"})
	root.SetOut(&bytes.Buffer{})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/vigil-test-kubeconfig") {
		t.Fatalf("status with k8s_config_file: error = %v, want it to name the file", err)
	}
}

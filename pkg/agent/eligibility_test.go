package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/kube"
)

func node(name string, mutate ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	for _, m := range mutate {
		m(n)
	}
	return n
}

func excludedByLabel(n *corev1.Node) { n.Labels[kube.LabelExcludeFromLB] = "" }

func networkUnavailable(n *corev1.Node) {
	n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue})
}

// Bug 8: a node labelled exclude-from-external-load-balancers, or whose
// network is unavailable, never campaigns for a VIP (unless told to ignore
// that); a Local Service whose only endpoint is on such a node has no
// eligible node.
func TestSyncNodeExclusion(t *testing.T) {
	const key = "default/web"
	tests := []struct {
		name     string
		nodes    []*corev1.Node
		local    bool
		ignore   bool
		want     []string
		wantCond statusView
	}{
		{name: "no Node object: eligible", want: []string{"campaign " + lease(key).String()}},
		{name: "plain node", nodes: []*corev1.Node{node(nodeA)}, want: []string{"campaign " + lease(key).String()}},
		{name: "labelled, another node eligible", nodes: []*corev1.Node{node(nodeA, excludedByLabel), node(nodeB)}},
		{name: "network unavailable, another node eligible", nodes: []*corev1.Node{node(nodeA, networkUnavailable), node(nodeB)}},
		{name: "every node excluded", nodes: []*corev1.Node{node(nodeA, excludedByLabel), node(nodeB, networkUnavailable)},
			wantCond: statusView{CondStatus: metav1.ConditionFalse, CondReason: "NoEligibleNode"}},
		{name: "labelled, ignored by setting", nodes: []*corev1.Node{node(nodeA, excludedByLabel)}, ignore: true,
			want: []string{"campaign " + lease(key).String()}},
		{name: "local, only endpoint on an excluded node", nodes: []*corev1.Node{node(nodeA, excludedByLabel)}, local: true,
			wantCond: statusView{CondStatus: metav1.ConditionFalse, CondReason: "NoEligibleNode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultConfig()
			cfg.IgnoreNodeExclusion = tt.ignore
			var opts []svcOpt
			if tt.local {
				opts = append(opts, local())
			}
			f := newFixture(t, cfg, withEndpoints(service("web", vip10, opts...), nodeA)...)
			for _, n := range tt.nodes {
				f.apply(n)
			}
			f.mustSync(key)
			f.flushStatus()
			if diff := cmp.Diff(tt.want, f.log.take()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCond, f.status(key)); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

// Bug 7: every address goes up with the kernel lifetime bound by the
// elector's term (expiry less the margin), and the refresher extends it.
func TestUpBoundedByTerm(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.a.refreshAddrs()
	want := termExpiry.Add(-f.a.cfg.AddrMargin)
	if len(f.dp.until) != 2 {
		t.Fatalf("Up called %d times, want 2 (sync, refresh)", len(f.dp.until))
	}
	for i, u := range f.dp.until {
		if !u.Equal(want) {
			t.Errorf("Up %d: until %v, want %v", i, u, want)
		}
	}
	// Leadership gone: the refresher does not extend it (the sync withdraws).
	delete(f.el.leading, lease(key))
	f.a.refreshAddrs()
	if len(f.dp.until) != 2 {
		t.Errorf("refreshed an address no longer led")
	}
}

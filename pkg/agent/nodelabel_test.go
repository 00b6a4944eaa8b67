package agent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestNodeLabelKeyValue(t *testing.T) {
	long := strings.Repeat("a", 40) + "/" + strings.Repeat("b", 40)
	keys := []struct{ key, want string }{
		{"default/web", NodeLabelPrefix + "web.default"},
		{long, NodeLabelPrefix + strings.Repeat("b", 40) + "." + strings.Repeat("a", 13) + "-"},
	}
	for _, tt := range keys {
		got := NodeLabelKey(tt.key)
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("NodeLabelKey(%q) = %q, want prefix %q", tt.key, got, tt.want)
		}
		if errs := validation.IsQualifiedName(got); len(errs) > 0 {
			t.Errorf("NodeLabelKey(%q) = %q is not a label name: %v", tt.key, got, errs)
		}
	}
	a := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	values := []struct {
		addrs []netip.Addr
		want  string
	}{
		{a("198.18.0.10"), "198.18.0.10"},
		{a("198.18.0.10", "fd00:1ab::10"), "198.18.0.10_fd00-1ab--10"},
		{a("fd00:1ab:1111:2222:3333:4444:5555:6666", "fd00:1ab:1111:2222:3333:4444:5555:7777"), "fd00-1ab-1111-2222-3333-4444-5555-6666"},
		{a("fd00::"), ""},
	}
	for _, tt := range values {
		if got := NodeLabelValue(tt.addrs); got != tt.want {
			t.Errorf("NodeLabelValue(%v) = %q, want %q", tt.addrs, got, tt.want)
		}
	}
}

// flushLabels runs the labeler's worker until its queue is empty and
// copies this node's Node from the fake API into the informer.
func (f *fixture) flushLabels() map[string]string {
	f.t.Helper()
	for f.a.labels.queue.Len() > 0 {
		f.a.processLabels(f.ctx)
	}
	n, err := f.client.CoreV1().Nodes().Get(f.ctx, nodeA, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.a.nodeIndex.Update(n); err != nil {
		f.t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range n.Labels {
		if strings.HasPrefix(k, NodeLabelPrefix) {
			out[k] = v
		}
	}
	return out
}

// enable_node_labeling: the announcing node carries the Service's label;
// it goes when the node stops announcing, when the Service is deleted and
// on shutdown; a label left by an earlier life goes at once.
func TestNodeLabels(t *testing.T) {
	const key = "default/web"
	cfg := defaultConfig()
	cfg.NodeLabels = true
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeA, Labels: map[string]string{"keep": "me", NodeLabelPrefix + "gone.default": "198.18.0.99"}}}
	f := newFixture(t, cfg, objects([]runtime.Object{node}, withEndpoints(service("web", vip10), nodeA), withEndpoints(service("db", vip6), nodeA))...)
	f.a.labels.queue.Add("node") // as Run does at start
	if diff := cmp.Diff(map[string]string{}, f.flushLabels()); diff != "" {
		t.Errorf("at start (-want +got):\n%s", diff)
	}
	f.el.leading[lease(key)] = true
	f.el.leading[lease("default/db")] = true
	f.mustSync(key, "default/db")
	want := map[string]string{NodeLabelPrefix + "web.default": "198.18.0.10", NodeLabelPrefix + "db.default": "fd00-1ab--10"}
	if diff := cmp.Diff(want, f.flushLabels()); diff != "" {
		t.Errorf("announcing (-want +got):\n%s", diff)
	}
	delete(f.el.leading, lease(key))
	f.mustSync(key)
	delete(want, NodeLabelPrefix+"web.default")
	if diff := cmp.Diff(want, f.flushLabels()); diff != "" {
		t.Errorf("lost web (-want +got):\n%s", diff)
	}
	f.remove("default/db")
	f.mustSync("default/db")
	if diff := cmp.Diff(map[string]string{}, f.flushLabels()); diff != "" {
		t.Errorf("db deleted (-want +got):\n%s", diff)
	}
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.flushLabels()
	if err := f.a.shutdown(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{}, f.flushLabels()); diff != "" {
		t.Errorf("after shutdown (-want +got):\n%s", diff)
	}
	if n, _ := f.client.CoreV1().Nodes().Get(f.ctx, nodeA, metav1.GetOptions{}); n.Labels["keep"] != "me" {
		t.Errorf("other labels touched: %v", n.Labels)
	}
}

package ipam

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// matchLabels is a selector of these labels (MetalLB's serviceAllocation
// selectors, as pkg/metallb converts them).
func matchLabels(t *testing.T, kv ...string) []allocator.LabelMatcher {
	t.Helper()
	ls := metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		ls.MatchLabels[kv[i]] = kv[i+1]
	}
	s, err := kube.SelectorFrom(ls)
	if err != nil {
		t.Fatal(err)
	}
	return []allocator.LabelMatcher{s}
}

// selectorPools: "team" serves namespaces labelled team=a, "gold" Services
// labelled tier=gold, "open" everyone, in that order.
func selectorPools(t *testing.T, open bool) *fakeSource {
	team := sourcePool("team", "10.0.1.0", "10.0.1.3", true)
	team.Priority, team.NamespaceSelectors = 1, matchLabels(t, "team", "a")
	gold := sourcePool("gold", "10.0.2.0", "10.0.2.3", true)
	gold.Priority, gold.ServiceSelectors = 2, matchLabels(t, "tier", "gold")
	src := &fakeSource{}
	src.set(team, gold)
	if open {
		o := sourcePool("open", "10.0.3.0", "10.0.3.3", true)
		o.Priority = 3
		src.set(team, gold, o)
	}
	return src
}

func inNamespace(ns string) svcOpt { return func(s *corev1.Service) { s.Namespace = ns } }

func withLabels(kv ...string) svcOpt {
	return func(s *corev1.Service) {
		s.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Labels[kv[i]] = kv[i+1]
		}
	}
}

func namespace(name string, kv ...string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	for i := 0; i+1 < len(kv); i += 2 {
		ns.Labels[kv[i]] = kv[i+1]
	}
	return ns
}

func (h *harness) createNamespace(ns *corev1.Namespace) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Namespaces().Create(h.ctx, ns, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) labelNamespace(name string, kv ...string) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Namespaces().Update(h.ctx, namespace(name, kv...), metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// addrsOf returns a Service's kube-vip.io/loadbalancerIPs, once it has one.
func (h *harness) addrsOf(ns, name string) string {
	h.t.Helper()
	var got string
	h.eventually(ns+"/"+name+" gets an address", func() bool {
		s, err := h.client.CoreV1().Services(ns).Get(h.ctx, name, metav1.GetOptions{})
		got = ""
		if err == nil {
			got = s.Annotations[kube.AnnotationLoadBalancerIPs]
		}
		return got != ""
	})
	return got
}

// syncNow runs a Service's sync by hand (once leading and the cache has
// caught up with cond) and returns what the allocator holds for it.
func (h *harness) syncNow(key string, cond func(*corev1.Service) bool) []string {
	h.t.Helper()
	ns, name, _ := strings.Cut(key, "/")
	h.eventually(key+" in the cache", func() bool {
		s, err := h.ctl.services.Services(ns).Get(name)
		return err == nil && cond(s)
	})
	h.eventually("leading", func() bool { h.ctl.mu.Lock(); defer h.ctl.mu.Unlock(); return h.ctl.alloc != nil })
	h.ctl.mu.Lock()
	defer h.ctl.mu.Unlock()
	if err := h.ctl.syncService(h.ctx, key); err != nil {
		h.t.Fatalf("sync %s: %v", key, err)
	}
	as, _ := h.ctl.alloc.Lookup(key)
	var out []string
	for _, a := range as.Addrs {
		out = append(out, a.String())
	}
	return out
}

// MetalLB's serviceAllocation through the controller: the Namespace's
// labels and the Service's pick the pool; a Service that gains a label
// keeps its address.
func TestSelectorPools(t *testing.T) {
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}, Sources: []PoolSource{selectorPools(t, true)}},
		namespace("ns"), namespace("team-a", "team", "a"), namespace("team-b", "team", "b"))
	got := map[string]string{}
	for _, s := range []*corev1.Service{ // one after the other: each takes the first free address
		service("team", inNamespace("team-a")),
		service("gold", withLabels("tier", "gold")),
		service("gold-team", inNamespace("team-a"), withLabels("tier", "gold")),
		service("other-team", inNamespace("team-b")),
		service("plain"),
	} {
		h.create(s)
		got[s.Namespace+"/"+s.Name] = h.addrsOf(s.Namespace, s.Name)
	}
	want := map[string]string{
		"team-a/team":       "10.0.1.0",
		"ns/gold":           "10.0.2.0",
		"team-a/gold-team":  "10.0.1.1", // team comes first
		"team-b/other-team": "10.0.3.0",
		"ns/plain":          "10.0.3.1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	h.eventually("plain hears its pool", func() bool {
		evs := h.rec.find("ns/plain", "IPAllocated")
		return len(evs) == 1 && evs[0].msg == "10.0.3.1 from pool open"
	})

	// Gaining gold's label does not move plain.
	svc, err := h.client.CoreV1().Services("ns").Get(h.ctx, "plain", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Labels = map[string]string{"tier": "gold"}
	if _, err := h.client.CoreV1().Services("ns").Update(h.ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"10.0.3.1"}, h.syncNow("ns/plain", func(s *corev1.Service) bool { return s.Labels["tier"] == "gold" })); diff != "" {
		t.Errorf("plain holds (-want +got):\n%s", diff)
	}
}

// A Namespace's labels changing queues its Services: one that no pool
// served gets an address; one that holds an address keeps it when the
// label goes, but a new Service then gets none.
func TestNamespaceLabelChange(t *testing.T) {
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}, Sources: []PoolSource{selectorPools(t, false)}},
		namespace("late"))
	h.create(service("x", inNamespace("late")))
	h.eventually("x hears no pool serves it", func() bool { return len(h.rec.find("late/x", "AllocationFailed")) > 0 })

	h.labelNamespace("late", "team", "a")
	if got := h.addrsOf("late", "x"); got != "10.0.1.0" {
		t.Errorf("x got %s, want 10.0.1.0 from team once its namespace has team=a", got)
	}

	h.labelNamespace("late")
	inCache := func(*corev1.Service) bool {
		ns, err := h.ctl.nss.Get("late")
		return err == nil && len(ns.Labels) == 0
	}
	if diff := cmp.Diff([]string{"10.0.1.0"}, h.syncNow("late/x", inCache)); diff != "" {
		t.Errorf("x holds (-want +got) after the label went:\n%s", diff)
	}
	h.create(service("y", inNamespace("late")))
	if got := h.syncNow("late/y", inCache); len(got) != 0 {
		t.Errorf("y holds %v, want nothing: no pool serves the namespace now", got)
	}
}

// A Service seen before its Namespace waits for it (its labels may decide
// the pool) while a pool selects by namespace labels; then it is served.
func TestServiceBeforeItsNamespace(t *testing.T) {
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}, Sources: []PoolSource{selectorPools(t, true)}})
	h.create(service("x", inNamespace("new")))
	if got := h.syncNow("new/x", func(*corev1.Service) bool { return true }); len(got) != 0 {
		t.Errorf("x holds %v before its Namespace is seen, want nothing", got)
	}
	if evs := h.rec.find("new/x", "AllocationFailed"); len(evs) != 0 {
		t.Errorf("x's events %+v, want none while it waits", evs)
	}
	h.createNamespace(namespace("new", "team", "a"))
	if got := h.addrsOf("new", "x"); got != "10.0.1.0" {
		t.Errorf("x got %s, want 10.0.1.0 from team", got)
	}
}

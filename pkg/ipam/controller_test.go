package ipam

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
)

// fakeElector wins the election as soon as it is campaigned for; like the
// real one, it drops a Campaign made before it runs.
type fakeElector struct {
	mu          sync.Mutex
	running     bool
	lost        bool // Leading is false although campaigning
	campaigning map[election.Key]bool
	notify      func(election.Key)
}

func (e *fakeElector) Campaign(k election.Key) {
	e.mu.Lock()
	if !e.running || e.campaigning[k] {
		e.mu.Unlock()
		return
	}
	e.campaigning[k] = true
	e.mu.Unlock()
	e.notify(k)
}

func (e *fakeElector) Campaigning(k election.Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.campaigning[k]
}

func (e *fakeElector) Leading(k election.Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.campaigning[k] && !e.lost
}

func (e *fakeElector) setLost(lost bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lost = lost
}

func (e *fakeElector) run() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.running = true
}

// fakeDiscovery serves the IPPool resource or not.
type fakeDiscovery struct {
	mu     sync.Mutex
	served bool
	err    error // every look fails with it
	asked  int
}

func (d *fakeDiscovery) ServerResourcesForGroupVersionWithContext(_ context.Context, gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked++
	if d.err != nil {
		return nil, d.err
	}
	if !d.served || gv != IPPoolResource.GroupVersion().String() {
		return nil, apierrors.NewNotFound(schema.GroupResource{}, gv)
	}
	return &metav1.APIResourceList{GroupVersion: gv, APIResources: []metav1.APIResource{{Name: "ippools"}, {Name: "ippools/status"}}}, nil
}

func (d *fakeDiscovery) serve(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.served = on
}

// recorded is one Event.
type recorded struct {
	kind, name, typ, reason, msg string
}

type recorder struct {
	mu     sync.Mutex
	events []recorded
}

func (r *recorder) Event(obj runtime.Object, typ, reason, msg string) {
	var kind, name string
	switch o := obj.(type) {
	case *corev1.ObjectReference:
		kind, name = o.Kind, o.Name
	case *corev1.Service:
		kind, name = "Service", o.Namespace+"/"+o.Name
	case *corev1.ConfigMap:
		kind, name = "ConfigMap", o.Name
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, recorded{kind, name, typ, reason, msg})
}

func (r *recorder) Eventf(obj runtime.Object, typ, reason, format string, args ...any) {
	r.Event(obj, typ, reason, fmt.Sprintf(format, args...))
}

func (r *recorder) AnnotatedEventf(obj runtime.Object, _ map[string]string, typ, reason, format string, args ...any) {
	r.Eventf(obj, typ, reason, format, args...)
}

func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.events...)
}

func (r *recorder) find(name, reason string) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, e := range r.events {
		if e.name == name && e.reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// harness runs a Controller against fake clients.
type harness struct {
	t      *testing.T
	ctx    context.Context
	client *fake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
	el     *fakeElector
	disco  *fakeDiscovery
	rec    *recorder
	ctl    *Controller
}

func newHarness(t *testing.T, cfg Config, objs ...runtime.Object) *harness {
	t.Helper()
	return newHarnessElector(t, cfg, true, objs...)
}

// newHarnessElector: electorRunning false drops Campaigns until el.run.
func newHarnessElector(t *testing.T, cfg Config, electorRunning bool, objs ...runtime.Object) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{
		t: t, ctx: ctx, client: fake.NewClientset(objs...),
		dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
			map[schema.GroupVersionResource]string{IPPoolResource: "IPPoolList"}),
		el: &fakeElector{running: electorRunning, campaigning: map[election.Key]bool{}}, disco: &fakeDiscovery{}, rec: &recorder{},
	}
	cfg.LeaseName, cfg.LeaseNamespace = "vigil-allocator", "vigil"
	if cfg.DiscoveryInterval == 0 {
		cfg.DiscoveryInterval = 20 * time.Millisecond
	}
	if cfg.CampaignInterval == 0 {
		cfg.CampaignInterval = 20 * time.Millisecond
	}
	ctl, err := New(cfg, kubeclienttest.Wrap(h.client), h.dyn, h.el, h.rec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctl.ippools.disco = h.disco
	h.ctl, h.el.notify = ctl, ctl.LeaseChanged
	// The fake clientset drops objects created between an informer's list
	// and its watch: wait for the watches before the test creates any.
	watching := make(chan string, 16)
	h.client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := h.client.Tracker().Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return false, nil, err
		}
		select { // the watch is registered: objects created now are seen
		case watching <- a.GetResource().Resource:
		default:
		}
		return true, w, nil
	})
	done := make(chan error, 1)
	go func() { done <- ctl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("Run: %v", err)
		}
	})
	for seen := map[string]bool{}; !seen["services"] || !seen["namespaces"] || !seen["configmaps"]; {
		seen[<-watching] = true
	}
	return h
}

// eventually waits (10s at most) until cond holds.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	err := wait.PollUntilContextTimeout(h.ctx, 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		h.t.Fatalf("never: %s", what)
	}
}

type svcOpt func(*corev1.Service)

func withClass(c string) svcOpt { return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c } }

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) { s.Annotations[k] = v }
}

func service(name string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: map[string]string{}, UID: k8stypes.UID("uid-" + uidOf(name))},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func uidOf(s string) string { return strings.ReplaceAll(s, "/", "-") }

func (h *harness) create(s *corev1.Service) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Services(s.Namespace).Create(h.ctx, s, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) delete(name string) {
	h.t.Helper()
	if err := h.client.CoreV1().Services("ns").Delete(h.ctx, name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// addrs returns the Service's kube-vip.io/loadbalancerIPs.
func (h *harness) addrs(name string) string {
	s, err := h.client.CoreV1().Services("ns").Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return s.Annotations[kube.AnnotationLoadBalancerIPs]
}

func (h *harness) allocated(name string) string {
	h.t.Helper()
	var got string
	h.eventually(name+" gets an address", func() bool { got = h.addrs(name); return got != "" })
	return got
}

// notAllocated runs the Service's sync once more, by hand, and reports
// whether it still holds nothing, in the allocator or on the object.
func (h *harness) notAllocated(name string) bool {
	h.t.Helper()
	key := "ns/" + name
	h.eventually(key+" in the cache", func() bool { _, err := h.ctl.services.Services("ns").Get(name); return err == nil })
	h.ctl.mu.Lock()
	err := h.ctl.syncService(h.ctx, key)
	_, held := h.ctl.alloc.Lookup(key)
	h.ctl.mu.Unlock()
	if err != nil {
		h.t.Fatalf("sync %s: %v", key, err)
	}
	return !held && h.addrs(name) == ""
}

func configMap(data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ConfigMapNamespace, Name: ConfigMapName}, Data: data}
}

func (h *harness) createPool(name string, addrs ...string) {
	h.t.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "vigil.io/v1alpha1", "kind": "IPPool",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"addresses": toAny(addrs), "autoAssign": false},
	}}
	if _, err := h.dyn.Resource(IPPoolResource).Create(h.ctx, obj, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// One class policy for agents and allocator: the allocator gives an address
// exactly to the Services kube.ClassPolicy.Handles. Before, it also took
// class "default" with lb_class_only, and with legacy handling off it still
// took Services with no class: addresses no agent announced.
func TestClassMatrix(t *testing.T) {
	const ours = "example.com/vigil"
	classes := []struct {
		name string
		opt  svcOpt
	}{
		{"none", func(*corev1.Service) {}},
		{"default", withClass("default")},
		{"ours", withClass(ours)},
		{"other", withClass("example.com/other")},
	}
	for _, tt := range []struct {
		legacy, only bool
		want         []string // classes that get an address
	}{
		{legacy: true, only: false, want: []string{"none", "default", "ours"}},
		{legacy: false, only: false, want: []string{"ours"}},
		{legacy: true, only: true, want: []string{"ours"}},
		{legacy: false, only: true, want: []string{"ours"}},
	} {
		t.Run(fmt.Sprintf("legacy=%v,only=%v", tt.legacy, tt.only), func(t *testing.T) {
			h := newHarness(t, Config{Class: kube.ClassPolicy{Name: ours, Legacy: tt.legacy, Only: tt.only}},
				configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.9"}))
			for _, c := range classes {
				h.create(service(c.name, c.opt))
			}
			for _, name := range tt.want {
				h.allocated(name)
			}
			var got []string
			for _, c := range classes {
				if h.notAllocated(c.name) {
					continue
				}
				got = append(got, c.name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Services given an address (-want +got):\n%s", diff)
			}
		})
	}
}

// Bug 5: with only kube-vip-cloud-provider's ConfigMap and no IPPool CRD,
// Services get addresses, the Lease says once why there are no IPPools, and
// nothing lists IPPools. Installing the CRD later serves IPPools.
func TestWithoutIPPoolCRD(t *testing.T) {
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}},
		configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.2"}))
	h.create(service("a"))
	if got := h.allocated("a"); got != "10.0.0.1" {
		t.Errorf("a got %s, want 10.0.0.1", got)
	}
	// Several discovery rounds and pool reloads later, still said once.
	h.eventually("discovery asked again", func() bool { h.disco.mu.Lock(); defer h.disco.mu.Unlock(); return h.disco.asked >= 5 })
	h.ctl.control.Add(ctlPools)
	h.create(service("b"))
	h.allocated("b")
	if evs := h.rec.find("vigil-allocator", reasonNoIPPoolCRD); len(evs) != 1 || evs[0].kind != "Lease" ||
		!strings.Contains(evs[0].msg, "serving 1 pool(s) from ConfigMap kube-system/kubevip") {
		t.Errorf("Lease events = %+v, want one saying the CRD is missing", evs)
	}
	for _, a := range h.dyn.Actions() {
		if a.GetResource() == IPPoolResource {
			t.Errorf("IPPools touched while the CRD is missing: %v", a)
		}
	}

	h.disco.serve(true)
	h.createPool("manual", "10.9.0.0/30")
	h.create(service("c", withAnnotation(kube.AnnotationPool, "manual")))
	if got := h.allocated("c"); got != "10.9.0.0" {
		t.Errorf("c got %s, want 10.9.0.0 from the IPPool installed later", got)
	}
}

// While discovery fails (the API server away) the IPPool source looks
// again a second later, not a whole interval, and the allocator waits
// for an answer (at most syncWait): an allocator started during an API
// server outage went on without its IPPools up to 30 s after the API
// server was back.
func TestIPPoolDiscoveryRetriedSoon(t *testing.T) {
	d := &fakeDiscovery{err: apierrors.NewServiceUnavailable("down")}
	clk := clocktest.New(time.Time{})
	s := newIPPoolSource(d, nil, 30*time.Second, clk, slog.New(slog.DiscardHandler), func() {})
	s.check(t.Context())
	if got := s.nextCheck(); got != time.Second {
		t.Errorf("next look after a failed one in %v, want 1s", got)
	}
	if s.settled() {
		t.Error("settled after a failed look: the allocator would lead without its IPPools")
	}
	clk.Step(syncWait + time.Second)
	if !s.settled() {
		t.Errorf("not settled after %v of failed looks: the allocator would wait for discovery forever", syncWait)
	}
	d.mu.Lock()
	d.err = nil
	d.mu.Unlock()
	s.check(t.Context()) // not installed
	if got := s.nextCheck(); got != 30*time.Second {
		t.Errorf("next look after an answer in %v, want the interval (30s)", got)
	}
}

// Bug 6: a Service waiting for an address gets one as soon as another
// Service frees it.
func TestWaitingServiceGetsFreedAddress(t *testing.T) {
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}},
		configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.1"}))
	h.create(service("a"))
	h.allocated("a")
	h.create(service("b"))
	h.eventually("b hears the pool is exhausted", func() bool { return len(h.rec.find("ns/b", "AllocationFailed")) > 0 })
	h.delete("a")
	if got := h.allocated("b"); got != "10.0.0.1" {
		t.Errorf("b got %s, want a's freed 10.0.0.1", got)
	}
}

// A Service asking for several addresses of one family holds all of them
// (was: extras held under "key#n" owners).
func TestSeveralAddressesOfOneFamily(t *testing.T) {
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}},
		configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.4"}))
	h.create(service("multi", withAnnotation(kube.AnnotationLoadBalancerIPs, "10.0.0.1,10.0.0.2")))
	h.create(service("a"))
	if got := h.allocated("a"); got != "10.0.0.3" {
		t.Errorf("a got %s, want 10.0.0.3 (10.0.0.1 and .2 are multi's)", got)
	}
	h.ctl.mu.Lock()
	as, _ := h.ctl.alloc.Lookup("ns/multi")
	h.ctl.mu.Unlock()
	if diff := cmp.Diff([]netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}, as.Addrs, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("multi holds (-want +got):\n%s", diff)
	}
}

// Bug 3: errors are visible. A write the API server refuses is an Event
// and is retried; an address taken by another Service is an Event.
func TestErrorsAreVisible(t *testing.T) {
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}},
		configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.5"}))
	var mu sync.Mutex
	refuse := 2
	h.client.PrependReactor("patch", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if refuse > 0 {
			refuse--
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "a", fmt.Errorf("no"))
		}
		return false, nil, nil
	})
	h.create(service("a"))
	h.allocated("a")
	if evs := h.rec.find("ns/a", "AllocationNotRecorded"); len(evs) == 0 || !strings.Contains(evs[0].msg, "forbidden") {
		t.Errorf("events = %+v, want AllocationNotRecorded naming the error", evs)
	}
	h.create(service("thief", withAnnotation(kube.AnnotationLoadBalancerIPs, h.addrs("a"))))
	h.eventually("thief hears the address is taken", func() bool {
		evs := h.rec.find("ns/thief", "AllocationFailed")
		return len(evs) > 0 && strings.Contains(evs[0].msg, "in use by ns/a")
	})
}

// Item 6: a Campaign made before the elector runs is dropped; the
// allocator campaigns again and leads once the elector runs.
func TestCampaignsAgainWhenNotACandidate(t *testing.T) {
	h := newHarnessElector(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}}, false,
		configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.5"}))
	h.create(service("a"))
	h.eventually("the controller tried to campaign", func() bool { return h.ctl.HasSynced() })
	h.el.run()
	h.allocated("a")
}

func TestFamilies(t *testing.T) {
	tests := []struct {
		name       string
		fams       []corev1.IPFamily
		policy     corev1.IPFamilyPolicy
		want       []allocator.Family
		wantPolicy allocator.FamilyPolicy
	}{
		{"unset", nil, "", []allocator.Family{allocator.IPv4}, allocator.SingleStack},
		{"IPv6", []corev1.IPFamily{corev1.IPv6Protocol}, "", []allocator.Family{allocator.IPv6}, allocator.SingleStack},
		{"require dual", []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}, corev1.IPFamilyPolicyRequireDualStack,
			[]allocator.Family{allocator.IPv4, allocator.IPv6}, allocator.RequireDualStack},
	}
	for _, tt := range tests {
		got, p := families(tt.fams, tt.policy)
		if diff := cmp.Diff(tt.want, got); diff != "" || p != tt.wantPolicy {
			t.Errorf("%s: policy %v, want %v; families (-want +got):\n%s", tt.name, p, tt.wantPolicy, diff)
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

// A broken ConfigMap key is a Warning on the ConfigMap, once per version of
// it, and the other keys still serve.
func TestBrokenConfigMapKeySaidOnce(t *testing.T) {
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}},
		configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.2", "cidr-broken": "nope"}))
	h.create(service("a"))
	h.allocated("a")
	for range 3 {
		h.ctl.control.Add(ctlPools)
	}
	h.create(service("b"))
	h.allocated("b")
	if evs := h.rec.find(ConfigMapName, "InvalidPool"); len(evs) != 1 || !strings.Contains(evs[0].msg, "cidr-broken") {
		t.Errorf("ConfigMap events = %+v, want one naming cidr-broken", evs)
	}
}

// A lease lost and won back is a new term, even when the two changes reach
// the control queue as one: a Service another leader gave an address
// meanwhile keeps it, and nobody else gets it.
func TestLeaseLostAndWonBackIsANewTerm(t *testing.T) {
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}},
		configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.5"}))
	h.create(service("a"))
	h.allocated("a")
	// Lost without a notification (it comes later, with the win); another
	// leader gives b an address meanwhile.
	h.el.setLost(true)
	h.create(service("b", withAnnotation(kube.AnnotationLoadBalancerIPs, "10.0.0.2")))
	h.eventually("the worker saw the loss", func() bool { h.ctl.mu.Lock(); defer h.ctl.mu.Unlock(); return h.ctl.alloc == nil })
	h.el.setLost(false)
	h.ctl.LeaseChanged(h.ctl.leaseKey())
	h.create(service("c"))
	if got := h.allocated("c"); got != "10.0.0.3" {
		t.Errorf("c got %s, want 10.0.0.3 (.1 is a's, .2 b's)", got)
	}
}

// poolStatsLog keeps the last counts Config.OnPoolStats received.
type poolStatsLog struct {
	mu   sync.Mutex
	last map[string]allocator.PoolStats
}

func (l *poolStatsLog) record(s map[string]allocator.PoolStats) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = s
}

// usage returns the used and free IPv4 counts summed over the last report.
func (l *poolStatsLog) usage() (used, free uint64, reported bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.last {
		used, free = used+s.IPv4.Used, free+s.IPv4.Free
	}
	return used, free, l.last != nil
}

// The leader reports its pools' counts (vigil_allocator_pool_addresses)
// after allocations, and nothing once it loses the Lease.
func TestPoolStatsReported(t *testing.T) {
	log := &poolStatsLog{}
	h := newHarness(t, Config{Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}, OnPoolStats: log.record},
		configMap(map[string]string{"range-global": "10.0.0.1-10.0.0.4"}))
	h.create(service("a"))
	h.allocated("a")
	h.eventually("one of four addresses reported used", func() bool {
		used, free, ok := log.usage()
		return ok && used == 1 && free == 3
	})
	h.el.setLost(true)
	h.ctl.LeaseChanged(h.ctl.leaseKey())
	h.eventually("no counts reported after the Lease is lost", func() bool {
		_, _, ok := log.usage()
		return !ok
	})
}

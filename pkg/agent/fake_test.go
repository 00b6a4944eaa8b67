package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
	"github.com/vigil-lb/vigil/pkg/vip"
)

// callLog is the one ordered record of what the agent asked of the elector
// and the dataplane.
type callLog struct{ calls []string }

func (l *callLog) add(format string, args ...any) {
	l.calls = append(l.calls, fmt.Sprintf(format, args...))
}

// take returns the calls logged since the last take.
func (l *callLog) take() []string {
	out := l.calls
	l.calls = nil
	return out
}

// fakeElector implements Elector. The test decides who leads and who holds
// what; every Campaign, Resign and ResignAll call is logged.
type fakeElector struct {
	log         *callLog
	leading     map[election.Key]bool
	heldByOther map[election.Key]bool
	unseen      map[election.Key]bool // Leases not in the elector's cache
	waiting     map[election.Key]bool // Leases waiting for room
	campaigning map[election.Key]bool
	successor   map[election.Key]string // Successor's answers (absent: none)
}

func (e *fakeElector) Successor(k election.Key) (string, bool) {
	s, ok := e.successor[k]
	return s, ok && e.leading[k]
}

func (e *fakeElector) Campaign(k election.Key) {
	e.log.add("campaign %s", k)
	e.campaigning[k] = true
}

func (e *fakeElector) Campaigning(k election.Key) bool { return e.campaigning[k] }

func (e *fakeElector) Resign(_ context.Context, k election.Key) error {
	e.log.add("resign %s", k)
	delete(e.campaigning, k)
	delete(e.leading, k)
	return nil
}

func (e *fakeElector) ResignAll(context.Context) error {
	e.log.add("resignAll")
	clear(e.campaigning)
	clear(e.leading)
	return nil
}

func (e *fakeElector) Leading(k election.Key) bool { return e.leading[k] }

// Term: a leading node's term runs to termExpiry (the test's fixed point).
func (e *fakeElector) Term(k election.Key) (election.Term, bool) {
	if !e.leading[k] {
		return election.Term{}, false
	}
	return election.Term{Deadline: termExpiry.Add(-2 * time.Second), Expiry: termExpiry}, true
}

// termExpiry is when every fake term ends.
var termExpiry = time.Date(2030, 1, 1, 0, 0, 5, 0, time.UTC)

func (e *fakeElector) HeldByOther(k election.Key) bool { return e.heldByOther[k] }

func (e *fakeElector) Observed(k election.Key) bool { return !e.unseen[k] }

func (e *fakeElector) Waiting(k election.Key) bool { return e.waiting[k] }

// fakeDataplane implements Dataplane. It logs only what changes the node:
// an Up of an address not bound, a Down of one that is (the agent calls
// both idempotently on every sync).
type fakeDataplane struct {
	log   *callLog
	bound map[netip.Addr]bool
	upErr error
	// DHCP: leases[key] is what the fake servers hand out, any family
	// (none yet: nothing); a Service gets those of the families it asks.
	leases map[string][]netip.Addr
	dhcp   map[string]vip.DHCPParams
	until  []time.Time // every until Up was given
	// foreign: addresses bound by something else (RemoveForeign).
	foreign   map[netip.Addr]bool
	ifaces    map[netip.Addr]string
	preserved map[netip.Addr]bool
}

func (d *fakeDataplane) EnsureDHCP(key string, p vip.DHCPParams) ([]netip.Addr, error) {
	if d.dhcp == nil {
		d.dhcp = map[string]vip.DHCPParams{}
	}
	if _, ok := d.dhcp[key]; !ok {
		d.log.add("dhcp start %s mac %s ipv4 %t ipv6 %t", key, p.MAC, p.IPv4, p.IPv6)
	}
	d.dhcp[key] = p
	var up []netip.Addr
	for _, addr := range d.leases[key] {
		if (addr.Is4() && !p.IPv4) || (addr.Is6() && !p.IPv6) {
			continue
		}
		if err := d.Up(addr, p.Until); err != nil {
			return up, err
		}
		up = append(up, addr)
	}
	return up, nil
}

func (d *fakeDataplane) StopDHCP(key string) error {
	if _, ok := d.dhcp[key]; !ok {
		return nil
	}
	for _, addr := range d.leases[key] {
		_ = d.Down(addr)
	}
	d.log.add("dhcp stop %s", key)
	delete(d.dhcp, key)
	return nil
}

func (d *fakeDataplane) DHCPKeys() []string {
	keys := make([]string, 0, len(d.dhcp))
	for k := range d.dhcp {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Preserve keeps a bound address aside (logged); Up takes it back.
func (d *fakeDataplane) Preserve(a netip.Addr) error {
	if d.bound[a] {
		d.log.add("preserve %s", a)
		delete(d.bound, a)
		if d.preserved == nil {
			d.preserved = map[netip.Addr]bool{}
		}
		d.preserved[a] = true
	}
	return nil
}

func (d *fakeDataplane) Preserved() []netip.Addr {
	out := make([]netip.Addr, 0, len(d.preserved))
	for a := range d.preserved {
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y netip.Addr) int { return x.Compare(y) })
	return out
}

// UseVLAN logs as UseInterface with the VLAN link's name.
func (d *fakeDataplane) UseVLAN(a netip.Addr, parent string, id int) error {
	if parent == "" {
		parent = "eth0"
	}
	d.UseInterface(a, fmt.Sprintf("%s.%d", parent, id))
	return nil
}

// UseInterface logs a change of an address's interface.
func (d *fakeDataplane) UseInterface(a netip.Addr, name string) {
	if d.ifaces == nil {
		d.ifaces = map[netip.Addr]string{}
	}
	if d.ifaces[a] != name {
		d.log.add("interface %s %q", a, name)
		d.ifaces[a] = name
	}
}

func (d *fakeDataplane) Up(a netip.Addr, until time.Time) error {
	if d.upErr != nil {
		return d.upErr
	}
	d.until = append(d.until, until)
	delete(d.preserved, a)
	if !d.bound[a] {
		d.log.add("up %s", a)
		d.bound[a] = true
	}
	return nil
}

func (d *fakeDataplane) Refresh(until map[netip.Addr]time.Time) map[netip.Addr]error {
	errs := map[netip.Addr]error{}
	for _, a := range slices.SortedFunc(maps.Keys(until), netip.Addr.Compare) {
		if err := d.Up(a, until[a]); err != nil {
			errs[a] = err
		}
	}
	return errs
}

func (d *fakeDataplane) Down(a netip.Addr) error {
	if d.preserved[a] {
		d.log.add("down preserved %s", a)
		delete(d.preserved, a)
	}
	if d.bound[a] {
		d.log.add("down %s", a)
		delete(d.bound, a)
	}
	return nil
}

// RemoveForeign removes (and logs) the addresses of foreign that are
// listed in addrs.
func (d *fakeDataplane) RemoveForeign(addrs []netip.Addr) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range addrs {
		if d.foreign[a] && !d.bound[a] {
			d.log.add("remove foreign %s", a)
			delete(d.foreign, a)
			out = append(out, a)
		}
	}
	return out, nil
}

// Answered: an address in foreign answers.
func (d *fakeDataplane) Answered(a netip.Addr, _ time.Time) (bool, error) {
	return d.foreign[a] || d.bound[a], nil
}

func (d *fakeDataplane) Bound() []netip.Addr {
	out := make([]netip.Addr, 0, len(d.bound))
	for a := range d.bound {
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y netip.Addr) int { return x.Compare(y) })
	return out
}

func (d *fakeDataplane) IsBound(a netip.Addr) bool { return d.bound[a] }

// fakeMetrics implements Metrics by logging every call.
type fakeMetrics struct{ calls []string }

func (m *fakeMetrics) Reconciled(_ time.Duration, err error) {
	m.calls = append(m.calls, fmt.Sprintf("reconciled failed=%t", err != nil))
}

func (m *fakeMetrics) Announcing(service string, on bool) {
	m.calls = append(m.calls, fmt.Sprintf("leading %s %t", service, on))
}

func (m *fakeMetrics) Announced(vips int) {
	m.calls = append(m.calls, fmt.Sprintf("announced %d", vips))
}

const (
	nodeA = "node-a"
	nodeB = "node-b"
)

// defaultConfig is per-Service election on node-a, kube-vip's default class
// handling.
func defaultConfig() Config {
	return Config{NodeName: nodeA, PerService: true, Class: kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}}
}

// fixture is an Agent on a fake clientset. The informers are not started:
// the test puts objects into the informers' indexers itself (apply, remove,
// refresh), so what sync sees is exactly what the test set up, and the
// informers' event handlers never enqueue anything behind its back.
type fixture struct {
	t      testing.TB
	ctx    context.Context
	a      *Agent
	client *fake.Clientset
	log    *callLog
	el     *fakeElector
	dp     *fakeDataplane
	m      *fakeMetrics
	rec    *record.FakeRecorder
}

func newFixture(t testing.TB, cfg Config, objs ...runtime.Object) *fixture {
	t.Helper()
	f := newFixtureOn(t, cfg, fake.NewClientset())
	for _, o := range objs {
		f.apply(o)
	}
	f.client.ClearActions()
	return f
}

// newFixtureOn is a second agent (another node) on the same fake API.
func newFixtureOn(t testing.TB, cfg Config, client *fake.Clientset) *fixture {
	t.Helper()
	log := &callLog{}
	f := &fixture{
		t: t, ctx: t.Context(), client: client, log: log,
		el: &fakeElector{log: log, leading: map[election.Key]bool{}, heldByOther: map[election.Key]bool{}, unseen: map[election.Key]bool{}, campaigning: map[election.Key]bool{}, successor: map[election.Key]string{}},
		dp: &fakeDataplane{log: log, bound: map[netip.Addr]bool{}},
		m:  &fakeMetrics{}, rec: record.NewFakeRecorder(100),
	}
	a, err := New(cfg, Deps{Client: kubeclienttest.Wrap(f.client), Elector: f.el, Dataplane: f.dp, Metrics: f.m, Recorder: f.rec, Successors: f.el}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	f.a = a
	return f
}

// copyFrom fills this agent's informer caches with what the fake API holds
// (Services and EndpointSlices), as another node's informers would.
func (f *fixture) copyFrom(_ *fixture) {
	f.t.Helper()
	svcs, err := f.client.CoreV1().Services("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range svcs.Items {
		if err := f.a.svcIndex.Update(&svcs.Items[i]); err != nil {
			f.t.Fatal(err)
		}
	}
	slices, err := f.client.DiscoveryV1().EndpointSlices("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range slices.Items {
		if err := f.a.sliceIndex.Update(&slices.Items[i]); err != nil {
			f.t.Fatal(err)
		}
	}
}

// apply creates or updates obj in the fake API and puts what the API
// returned into the informer's indexer.
func (f *fixture) apply(obj runtime.Object) {
	f.t.Helper()
	var err error
	switch o := obj.(type) {
	case *corev1.Service:
		c := f.client.CoreV1().Services(o.Namespace)
		var out *corev1.Service
		if out, err = c.Create(f.ctx, o, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			out, err = c.Update(f.ctx, o, metav1.UpdateOptions{})
		}
		if err == nil {
			err = f.a.svcIndex.Update(out)
		}
	case *corev1.Node:
		var out *corev1.Node
		if out, err = f.client.CoreV1().Nodes().Create(f.ctx, o, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			out, err = f.client.CoreV1().Nodes().Update(f.ctx, o, metav1.UpdateOptions{})
		}
		if err == nil {
			err = f.a.nodeIndex.Update(out)
		}
	case *corev1.Endpoints:
		c := f.client.CoreV1().Endpoints(o.Namespace)
		var out *corev1.Endpoints
		if out, err = c.Create(f.ctx, o, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			out, err = c.Update(f.ctx, o, metav1.UpdateOptions{})
		}
		if err == nil {
			err = f.a.sliceIndex.Update(out)
		}
	case *discoveryv1.EndpointSlice:
		c := f.client.DiscoveryV1().EndpointSlices(o.Namespace)
		var out *discoveryv1.EndpointSlice
		if out, err = c.Create(f.ctx, o, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			out, err = c.Update(f.ctx, o, metav1.UpdateOptions{})
		}
		if err == nil {
			err = f.a.sliceIndex.Update(out)
		}
	default:
		err = fmt.Errorf("unexpected %T", obj)
	}
	if err != nil {
		f.t.Fatalf("apply: %v", err)
	}
}

// remove deletes a Service from the fake API and the indexer.
func (f *fixture) remove(key string) {
	f.t.Helper()
	svc := f.get(key)
	if err := f.client.CoreV1().Services(svc.Namespace).Delete(f.ctx, svc.Name, metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if err := f.a.svcIndex.Delete(svc); err != nil {
		f.t.Fatal(err)
	}
}

// get reads a Service from the fake API.
func (f *fixture) get(key string) *corev1.Service {
	f.t.Helper()
	ns, name, _ := strings.Cut(key, "/")
	svc, err := f.client.CoreV1().Services(ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return svc
}

// update applies change to a copy of the Service as the API has it.
func (f *fixture) update(key string, change func(*corev1.Service)) {
	f.t.Helper()
	svc := f.get(key)
	change(svc)
	f.apply(svc)
}

func (f *fixture) sync(key string) error { return f.a.sync(f.ctx, key) }

func (f *fixture) mustSync(keys ...string) {
	f.t.Helper()
	for _, k := range keys {
		if err := f.sync(k); err != nil {
			f.t.Fatalf("sync %s: %v", k, err)
		}
	}
}

// flushStatus runs the status worker until its queue is empty, then copies
// every Service from the fake API back into the indexer, as the informer
// would.
func (f *fixture) flushStatus() {
	f.t.Helper()
	for f.a.statusQueue.Len() > 0 {
		f.a.processStatus(f.ctx)
	}
	list, err := f.client.CoreV1().Services("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range list.Items {
		if err := f.a.svcIndex.Update(&list.Items[i]); err != nil {
			f.t.Fatal(err)
		}
	}
}

// writes returns the Service writes (patch, update) since the last call.
func (f *fixture) writes() []string {
	var out []string
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource != "services" || (a.GetVerb() != "patch" && a.GetVerb() != "update") {
			continue
		}
		w := a.GetVerb()
		if s := a.GetSubresource(); s != "" {
			w += " " + s
		}
		out = append(out, w)
	}
	f.client.ClearActions()
	return out
}

// events returns the Events recorded since the last call, as "type reason".
func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.rec.Events:
			typ, rest, _ := strings.Cut(e, " ")
			reason, _, _ := strings.Cut(rest, " ")
			out = append(out, typ+" "+reason)
		default:
			return out
		}
	}
}

// drainQueue returns the keys in the work queue, sorted, and empties it.
func (f *fixture) drainQueue() []string {
	var out []string
	for f.a.queue.Len() > 0 {
		k, _ := f.a.queue.Get()
		f.a.queue.Done(k)
		f.a.queue.Forget(k)
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// statusView is what a Service shows of vigil's writes.
type statusView struct {
	VIPHost    string
	Ingress    []corev1.LoadBalancerIngress
	CondStatus metav1.ConditionStatus // "" = no vigil condition
	CondReason string
}

func (f *fixture) status(key string) statusView {
	f.t.Helper()
	svc := f.get(key)
	v := statusView{VIPHost: svc.Annotations[kube.AnnotationVIPHost], Ingress: svc.Status.LoadBalancer.Ingress}
	if c := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced); c != nil {
		v.CondStatus, v.CondReason = c.Status, c.Reason
	}
	return v
}

func (f *fixture) condition(key string) *metav1.Condition {
	f.t.Helper()
	return meta.FindStatusCondition(f.get(key).Status.Conditions, ConditionAnnounced)
}

// Builders.

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type svcOpt func(*corev1.Service)

// service is a LoadBalancer Service default/name asking for ips (the
// kube-vip.io/loadbalancerIPs annotation; "" = none) on port 80/TCP,
// created at t0.
func service(name, ips string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "default", Name: name, Generation: 1,
			CreationTimestamp: metav1.NewTime(t0),
		},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "p80", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if ips != "" {
		s.Annotations = map[string]string{kube.AnnotationLoadBalancerIPs: ips}
	}
	for _, o := range opts {
		o(s)
	}
	s.UID = types.UID(s.Namespace + "/" + s.Name)
	return s
}

func inNamespace(ns string) svcOpt { return func(s *corev1.Service) { s.Namespace = ns } }

func createdAfter(d time.Duration) svcOpt {
	return func(s *corev1.Service) { s.CreationTimestamp = metav1.NewTime(t0.Add(d)) }
}

// withPorts replaces the ports with these TCP ports.
func withPorts(ports ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p})
		}
	}
}

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withClass(c string) svcOpt { return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c } }

func withType(t corev1.ServiceType) svcOpt { return func(s *corev1.Service) { s.Spec.Type = t } }

func local() svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
}

// endpoint is a ready endpoint on node ("" = no node name).
type endpoint struct {
	node     string
	notReady bool
}

// slice is an EndpointSlice of svc with one endpoint per ep.
func slice(svc *corev1.Service, eps ...endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace, Name: svc.Name + "-abcde",
			Labels: map[string]string{kube.ServiceNameLabel: svc.Name},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, ep := range eps {
		e := discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.0.%d", i+1)}}
		if ep.node != "" {
			e.NodeName = &ep.node
		}
		if ep.notReady {
			f := false
			e.Conditions.Ready = &f
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	return s
}

// on is a ready endpoint on each node.
func on(nodes ...string) []endpoint {
	out := make([]endpoint, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, endpoint{node: n})
	}
	return out
}

// withEndpoints returns svc and an EndpointSlice with a ready endpoint on
// each node.
func withEndpoints(svc *corev1.Service, nodes ...string) []runtime.Object {
	return []runtime.Object{svc, slice(svc, on(nodes...)...)}
}

func objects(groups ...[]runtime.Object) []runtime.Object {
	var out []runtime.Object
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func lease(serviceKey string) election.Key {
	ns, name, _ := strings.Cut(serviceKey, "/")
	return election.Key{Namespace: ns, Name: LeaseName(name)}
}

// enforceResourceVersion makes the fake API refuse a Service update whose
// resourceVersion is not the current one (409), as the real API does.
func enforceResourceVersion(client *fake.Clientset) {
	client.PrependReactor("update", "services", func(action k8stesting.Action) (bool, runtime.Object, error) {
		u := action.(k8stesting.UpdateAction)
		svc := u.GetObject().(*corev1.Service)
		cur, err := client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("services"), svc.Namespace, svc.Name)
		if err != nil {
			return false, nil, nil
		}
		rv := cur.(*corev1.Service).ResourceVersion
		if rv != svc.ResourceVersion {
			return true, nil, apierrors.NewConflict(corev1.Resource("services"), svc.Name, errors.New("stale resourceVersion"))
		}
		n, _ := strconv.Atoi(rv)
		svc = svc.DeepCopy()
		svc.ResourceVersion = strconv.Itoa(n + 1)
		return true, svc, client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("services"), svc, svc.Namespace)
	})
}

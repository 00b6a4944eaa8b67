package agent

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/svcsec"
)

// disable_service_updates: the VIP goes up, nothing is written to the
// Service (no status, no vipHost).
func TestNoServiceUpdates(t *testing.T) {
	const key = "default/web"
	cfg := defaultConfig()
	cfg.NoServiceUpdates = true
	f := newFixture(t, cfg, withEndpoints(service("web", vip10), nodeA)...)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.flushStatus()
	if diff := cmp.Diff([]string{"campaign default/kubevip-web", "up " + vip10}, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string(nil), f.writes()); diff != "" {
		t.Errorf("service writes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Normal VIPAcquired"}, f.events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// allow-reconcile-without-endpoints: with Cluster policy, a Service with
// no ready endpoint is still announced; with Local it is not.
func TestWithoutEndpoints(t *testing.T) {
	allow := withAnnotation(kube.AnnotationWithoutEndpoints, "true")
	tests := []struct {
		name string
		objs []runtime.Object
		want []string
	}{
		{"no endpoints, no annotation", []runtime.Object{service("web", vip10)}, nil},
		{"no endpoints", []runtime.Object{service("web", vip10, allow)}, []string{"campaign default/kubevip-web", "up " + vip10}},
		{"none ready", []runtime.Object{service("web", vip10, allow), slice(service("web", vip10), endpoint{node: nodeB, notReady: true})},
			[]string{"campaign default/kubevip-web", "up " + vip10}},
		{"Local: not announced", []runtime.Object{service("web", vip10, allow, local())}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const key = "default/web"
			f := newFixture(t, defaultConfig(), tt.objs...)
			f.el.leading[lease(key)] = true
			f.mustSync(key)
			if diff := cmp.Diff(tt.want, f.log.take()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			f.flushStatus()
			if got := f.status(key).CondReason; (len(tt.want) == 2) != (got == "Announced") {
				t.Errorf("condition reason %q", got)
			}
		})
	}
}

// endpointsOf is a v1 Endpoints object of svc with a ready address on each
// of ready and a not-ready one on each of notReady.
func endpointsOf(svc *corev1.Service, ready, notReady []string) *corev1.Endpoints {
	sub := corev1.EndpointSubset{}
	for _, n := range ready {
		sub.Addresses = append(sub.Addresses, corev1.EndpointAddress{IP: "10.244.0.1", NodeName: &n})
	}
	for _, n := range notReady {
		sub.NotReadyAddresses = append(sub.NotReadyAddresses, corev1.EndpointAddress{IP: "10.244.0.2", NodeName: &n})
	}
	return &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name}, Subsets: []corev1.EndpointSubset{sub}}
}

// enable_endpoints: eligibility comes from v1 Endpoints (an EndpointSlice
// is not even watched).
func TestEndpointsSource(t *testing.T) {
	tests := []struct {
		name            string
		svc             *corev1.Service
		ready, notReady []string
		want            []string
	}{
		{"ready here, Local", service("web", vip10, local()), []string{nodeA}, nil, []string{"campaign default/kubevip-web", "up " + vip10}},
		{"ready elsewhere, Local", service("web", vip10, local()), []string{nodeB}, nil, nil},
		{"ready elsewhere, Cluster", service("web", vip10), []string{nodeB}, nil, []string{"campaign default/kubevip-web", "up " + vip10}},
		{"not ready", service("web", vip10), nil, []string{nodeA}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const key = "default/web"
			cfg := defaultConfig()
			cfg.Endpoints = true
			f := newFixture(t, cfg, tt.svc, endpointsOf(tt.svc, tt.ready, tt.notReady))
			f.el.leading[lease(key)] = true
			f.mustSync(key)
			if diff := cmp.Diff(tt.want, f.log.take()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

// kube-vip.io/serviceInterface: the announcing node binds the VIP on the
// Service's interface; removing the annotation goes back to the default.
func TestServiceInterface(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10, withAnnotation(kube.AnnotationServiceInterface, "eth1")), nodeA)...)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign default/kubevip-web", `interface 198.18.0.10 "eth1"`, "up " + vip10}, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	f.update(key, func(s *corev1.Service) { delete(s.Annotations, kube.AnnotationServiceInterface) })
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign default/kubevip-web", `interface 198.18.0.10 ""`}, f.log.take()); diff != "" {
		t.Errorf("after removing the annotation: calls (-want +got):\n%s", diff)
	}
}

// kube-vip.io/leaseName: Services naming one Lease share its election (one
// campaign, one holder announcing them all); a change of that Lease
// reaches them; it is resigned only when no Service uses it any more.
func TestLeaseNameShared(t *testing.T) {
	named := election.Key{Namespace: "default", Name: "web-group"}
	f := newFixture(t, defaultConfig(), objects(
		withEndpoints(service("a", vip10, withAnnotation(kube.AnnotationLeaseName, "web-group")), nodeA),
		withEndpoints(service("b", vip11, withAnnotation(kube.AnnotationLeaseName, "default/web-group")), nodeA),
	)...)
	f.el.leading[named] = true
	f.mustSync("default/a", "default/b")
	want := []string{"campaign default/web-group", "up " + vip10, "campaign default/web-group", "up " + vip11}
	if diff := cmp.Diff(want, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	f.drainQueue()
	f.a.LeaseChanged(named)
	if diff := cmp.Diff([]string{"default/a", "default/b"}, f.drainQueue()); diff != "" {
		t.Errorf("enqueued by LeaseChanged (-want +got):\n%s", diff)
	}

	// a leaves the group: its own Lease; the group's stays for b.
	f.update("default/a", func(s *corev1.Service) { delete(s.Annotations, kube.AnnotationLeaseName) })
	f.mustSync("default/a")
	if diff := cmp.Diff([]string{"campaign default/kubevip-a", "down " + vip10}, f.log.take()); diff != "" {
		t.Errorf("a left: calls (-want +got):\n%s", diff)
	}
	// b deleted: nobody uses the group's Lease; resigned.
	f.remove("default/b")
	f.mustSync("default/b")
	if diff := cmp.Diff([]string{"down " + vip11, "resign default/web-group"}, f.log.take()); diff != "" {
		t.Errorf("b deleted: calls (-want +got):\n%s", diff)
	}
}

// forcePerServiceElection: with a shared Lease and
// per_service_election_on_demand, the annotated Service is elected alone;
// without the setting the annotation changes nothing.
func TestForcePerServiceElection(t *testing.T) {
	for _, tt := range []struct {
		name     string
		onDemand bool
		want     election.Key
	}{
		{"on demand", true, lease("default/web")},
		{"not on demand", false, election.Key{Namespace: "kube-system", Name: "plndr-svcs-lock"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultConfig()
			cfg.PerService, cfg.LeaseName, cfg.LeaseNamespace = false, "plndr-svcs-lock", "kube-system"
			cfg.ElectionOnDemand = tt.onDemand
			f := newFixture(t, cfg, withEndpoints(service("web", vip10, withAnnotation(kube.AnnotationForcePerService, "true")), nodeA)...)
			m, _ := f.a.model("default/web")
			if got := f.a.leaseKey("default/web", m); got != tt.want {
				t.Errorf("leaseKey = %v, want %v", got, tt.want)
			}
		})
	}
}

// vip_preserve_on_leadership_loss: losing the Lease preserves the address
// (silenced) instead of removing it; leading again takes it back; deleting
// the Service removes it; so does shutdown.
func TestPreserveOnLeadershipLoss(t *testing.T) {
	const key = "default/web"
	cfg := defaultConfig()
	cfg.Preserve = true
	f := newFixture(t, cfg, objects(withEndpoints(service("web", vip10), nodeA), withEndpoints(service("db", vip11), nodeA))...)
	f.el.leading[lease(key)] = true
	f.el.leading[lease("default/db")] = true
	f.mustSync(key, "default/db")
	f.log.take()
	delete(f.el.leading, lease(key))
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign default/kubevip-web", "preserve " + vip10}, f.log.take()); diff != "" {
		t.Errorf("lost: calls (-want +got):\n%s", diff)
	}
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign default/kubevip-web", "up " + vip10}, f.log.take()); diff != "" {
		t.Errorf("leading again: calls (-want +got):\n%s", diff)
	}
	delete(f.el.leading, lease(key))
	f.mustSync(key)
	f.remove(key)
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign default/kubevip-web", "preserve " + vip10, "down preserved " + vip10, "resign default/kubevip-web"}, f.log.take()); diff != "" {
		t.Errorf("deleted: calls (-want +got):\n%s", diff)
	}
	delete(f.el.leading, lease("default/db"))
	f.mustSync("default/db")
	f.log.take()
	if err := f.a.shutdown(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"down preserved " + vip11, "resignAll"}, f.log.take()); diff != "" {
		t.Errorf("shutdown: calls (-want +got):\n%s", diff)
	}
}

// fakeFirewall records every set of guarded VIPs.
type fakeFirewall struct {
	sets []map[netip.Addr][]svcsec.Port
}

func (f *fakeFirewall) Set(m map[netip.Addr][]svcsec.Port) error {
	f.sets = append(f.sets, m)
	return nil
}

// enable_service_security: every VIP up here is guarded with the ports of
// all its Services; written only when that changes; nothing on shutdown.
func TestServiceSecurity(t *testing.T) {
	fw := &fakeFirewall{}
	f := newFixture(t, defaultConfig(), objects(
		withEndpoints(service("web", vip10, withPorts(80, 443)), nodeA),
		withEndpoints(service("dns", vip10, withPorts(53)), nodeA),
	)...)
	f.a.fw = fw
	f.el.leading[lease("default/web")] = true
	f.el.leading[lease("default/dns")] = true
	f.mustSync("default/web", "default/dns", "default/web")
	shutdown := f.a.shutdown()
	if shutdown != nil {
		t.Fatal(shutdown)
	}
	v := netip.MustParseAddr(vip10)
	want := []map[netip.Addr][]svcsec.Port{
		{v: {{Proto: 6, Port: 80}, {Proto: 6, Port: 443}}},
		{v: {{Proto: 6, Port: 53}, {Proto: 6, Port: 80}, {Proto: 6, Port: 443}}},
		{},
	}
	if diff := cmp.Diff(want, fw.sets, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("firewall sets (-want +got):\n%s", diff)
	}
}

// A host name in kube-vip.io/loadbalancerIPs: the VIP is its address;
// when the name resolves to another one, the Service is synced and the VIP
// moves.
func TestHostNameMoves(t *testing.T) {
	const key = "default/web"
	now := map[string][]netip.Addr{"web.lab": {netip.MustParseAddr(vip10)}}
	f := newFixture(t, defaultConfig())
	f.a.models.Resolve(func(n string) []netip.Addr { return now[n] })
	for _, o := range withEndpoints(service("web", "web.lab"), nodeA) {
		f.apply(o)
	}
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign default/kubevip-web", "up " + vip10}, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	now["web.lab"] = []netip.Addr{netip.MustParseAddr(vip11)}
	f.drainQueue()
	f.a.NameChanged("web.lab")
	if diff := cmp.Diff([]string{key}, f.drainQueue()); diff != "" {
		t.Errorf("enqueued (-want +got):\n%s", diff)
	}
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign default/kubevip-web", "down " + vip10, "up " + vip11}, f.log.take()); diff != "" {
		t.Errorf("after the change: calls (-want +got):\n%s", diff)
	}
}

// kube-vip.io/serviceVLAN: the VIP is placed on the VLAN link (wins over
// serviceInterface).
func TestServiceVLAN(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10,
		withAnnotation(kube.AnnotationServiceVLAN, "200"), withAnnotation(kube.AnnotationServiceInterface, "eth1")), nodeA)...)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign default/kubevip-web", `interface 198.18.0.10 "eth0.200"`, "up " + vip10}, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

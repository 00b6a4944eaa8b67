package agent

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
)

const (
	vip10 = "198.18.0.10"
	vip11 = "198.18.0.11"
	vip6  = "fd00:1ab::10"
)

var vipMode = corev1.LoadBalancerIPModeVIP

func ingress(ip string, ports ...int32) corev1.LoadBalancerIngress {
	in := corev1.LoadBalancerIngress{IP: ip, IPMode: &vipMode}
	for _, p := range ports {
		in.Ports = append(in.Ports, corev1.PortStatus{Port: p, Protocol: corev1.ProtocolTCP})
	}
	return in
}

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "per service", cfg: Config{NodeName: nodeA, PerService: true}},
		{name: "shared lease", cfg: Config{NodeName: nodeA, LeaseName: "vigil", LeaseNamespace: "kube-system"}},
		{name: "no node name", cfg: Config{PerService: true}, wantErr: true},
		{name: "shared lease without name", cfg: Config{NodeName: nodeA, LeaseNamespace: "kube-system"}, wantErr: true},
		{name: "shared lease without namespace", cfg: Config{NodeName: nodeA, LeaseName: "vigil"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, Deps{Client: kubeclienttest.Wrap(fake.NewClientset()), Elector: &fakeElector{}, Dataplane: &fakeDataplane{}}, nil)
			if (err != nil) != tt.wantErr {
				t.Errorf("New: err = %v, want error %t", err, tt.wantErr)
			}
		})
	}
}

// A handled Service with endpoints is campaigned for; once this node leads
// it, the VIP goes up and the status tells so.
func TestSyncAnnounces(t *testing.T) {
	tests := []struct {
		name        string
		svc         *corev1.Service
		wantUp      []string
		wantIngress []corev1.LoadBalancerIngress
		wantMessage string
	}{
		{
			name:        "IPv4",
			svc:         service("web", vip10, withPorts(80, 443)),
			wantUp:      []string{"up " + vip10},
			wantIngress: []corev1.LoadBalancerIngress{ingress(vip10, 80, 443)},
			wantMessage: "node node-a announces " + vip10,
		},
		{
			name:        "dual stack",
			svc:         service("web", vip6+", "+vip10),
			wantUp:      []string{"up " + vip10, "up " + vip6},
			wantIngress: []corev1.LoadBalancerIngress{ingress(vip10, 80), ingress(vip6, 80)},
			wantMessage: "node node-a announces " + vip10 + "," + vip6,
		},
		{
			name: "spec.loadBalancerIP",
			svc: service("web", "", func(s *corev1.Service) {
				s.Spec.LoadBalancerIP = vip10
			}),
			wantUp:      []string{"up " + vip10},
			wantIngress: []corev1.LoadBalancerIngress{ingress(vip10, 80)},
			wantMessage: "node node-a announces " + vip10,
		},
		{
			name:        "our class",
			svc:         service("web", vip10, withClass(kube.DefaultClass)),
			wantUp:      []string{"up " + vip10},
			wantIngress: []corev1.LoadBalancerIngress{ingress(vip10, 80)},
			wantMessage: "node node-a announces " + vip10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const key = "default/web"
			f := newFixture(t, defaultConfig(), withEndpoints(tt.svc, nodeB)...)

			// Not leading yet: campaign, nothing bound, nothing written.
			f.mustSync(key)
			f.flushStatus()
			if diff := cmp.Diff([]string{"campaign default/kubevip-web"}, f.log.take()); diff != "" {
				t.Errorf("first sync: calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string(nil), f.writes()); diff != "" {
				t.Errorf("first sync: status writes (-want +got):\n%s", diff)
			}

			// Leading: up, event, metrics, intent, status.
			f.el.leading[lease(key)] = true
			f.mustSync(key)
			want := append([]string{"campaign default/kubevip-web"}, tt.wantUp...)
			if diff := cmp.Diff(want, f.log.take()); diff != "" {
				t.Errorf("leading: calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"Normal VIPAcquired"}, f.events()); diff != "" {
				t.Errorf("leading: events (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"leading default/web true"}, f.m.calls); diff != "" {
				t.Errorf("leading: metrics (-want +got):\n%s", diff)
			}
			if !f.a.intents[key].up {
				t.Errorf("leading: status intent %+v, want up", f.a.intents[key])
			}
			f.flushStatus()
			wantStatus := statusView{VIPHost: nodeA, Ingress: tt.wantIngress, CondStatus: metav1.ConditionTrue, CondReason: "Announced"}
			if diff := cmp.Diff(wantStatus, f.status(key)); diff != "" {
				t.Errorf("leading: status (-want +got):\n%s", diff)
			}
			wantCond := &metav1.Condition{
				Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Announced",
				Message: tt.wantMessage, ObservedGeneration: 1,
			}
			if diff := cmp.Diff(wantCond, f.condition(key), cmpopts.IgnoreFields(metav1.Condition{}, "LastTransitionTime")); diff != "" {
				t.Errorf("leading: condition (-want +got):\n%s", diff)
			}
			f.writes()

			// Again: nothing changes, nothing is written.
			f.mustSync(key)
			f.flushStatus()
			if diff := cmp.Diff([]string{"campaign default/kubevip-web"}, f.log.take()); diff != "" {
				t.Errorf("steady: calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string(nil), f.events()); diff != "" {
				t.Errorf("steady: events (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string(nil), f.writes()); diff != "" {
				t.Errorf("steady: status writes (-want +got):\n%s", diff)
			}
		})
	}
}

// Campaigning while another node leads: no VIP, and the holder's status
// stands.
func TestSyncNotLeading(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
	f.el.heldByOther[lease(key)] = true
	f.mustSync(key)
	f.flushStatus()
	if diff := cmp.Diff([]string{"campaign default/kubevip-web"}, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if got := f.dp.Bound(); len(got) != 0 {
		t.Errorf("bound %v, want nothing", got)
	}
	if diff := cmp.Diff(statusView{}, f.status(key)); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if f.a.intents[key].up {
		t.Errorf("status intent %+v, want not up", f.a.intents[key])
	}
}

// Losing the lease to another node withdraws the VIP; the node stays a
// candidate.
func TestSyncLostLeadership(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.log.take()
	f.events()
	f.m.calls = nil

	delete(f.el.leading, lease(key))
	f.el.heldByOther[lease(key)] = true
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign default/kubevip-web", "down " + vip10}, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Normal VIPReleased"}, f.events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"leading default/web false"}, f.m.calls); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	if !f.el.campaigning[lease(key)] {
		t.Error("no longer campaigning, want still a candidate")
	}
}

// A Service that stops being vigil's while this node announces it: the VIP
// goes down before the lease is resigned, and vigil takes back what it
// wrote.
func TestSyncNoLongerHandled(t *testing.T) {
	const key = "default/web"
	tests := []struct {
		name   string
		change func(f *fixture)
	}{
		{"ignore annotation", func(f *fixture) {
			f.update(key, func(s *corev1.Service) { s.Annotations[kube.AnnotationIgnore] = "true" })
		}},
		{"other class", func(f *fixture) {
			f.update(key, func(s *corev1.Service) { c := "example.com/other"; s.Spec.LoadBalancerClass = &c })
		}},
		{"type ClusterIP", func(f *fixture) {
			f.update(key, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP })
		}},
		{"being deleted", func(f *fixture) {
			f.update(key, func(s *corev1.Service) { now := metav1.NewTime(t0); s.DeletionTimestamp = &now })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
			f.el.leading[lease(key)] = true
			f.mustSync(key)
			f.flushStatus()
			if got := f.status(key); got.VIPHost != nodeA {
				t.Fatalf("setup: status %+v, want announced by %s", got, nodeA)
			}
			f.log.take()
			f.events()

			tt.change(f)
			f.mustSync(key)
			if diff := cmp.Diff([]string{"down " + vip10, "resign default/kubevip-web"}, f.log.take()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"Normal VIPReleased"}, f.events()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			f.flushStatus()
			if diff := cmp.Diff(statusView{}, f.status(key)); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}

			// And it stays withdrawn.
			f.mustSync(key)
			if diff := cmp.Diff([]string(nil), f.log.take()); diff != "" {
				t.Errorf("second sync: calls (-want +got):\n%s", diff)
			}
		})
	}
}

// A deleted Service is withdrawn and its lease resigned.
func TestSyncDeleted(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.flushStatus()
	f.log.take()
	f.m.calls = nil

	f.remove(key)
	f.mustSync(key)
	if diff := cmp.Diff([]string{"down " + vip10, "resign default/kubevip-web"}, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"leading default/web false"}, f.m.calls); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	if _, ok := f.a.intents[key]; ok {
		t.Error("status intent kept for a deleted Service")
	}
	f.writes()
	f.flushStatus()
	if diff := cmp.Diff([]string(nil), f.writes()); diff != "" {
		t.Errorf("status writes for a deleted Service (-want +got):\n%s", diff)
	}
}

// A Service that vigil does not handle is left alone.
func TestSyncNotHandled(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		svc  *corev1.Service
	}{
		{name: "ignored", svc: service("web", vip10, withAnnotation(kube.AnnotationIgnore, "true"))},
		{name: "other class", svc: service("web", vip10, withClass("example.com/other"))},
		{name: "no class, strict", cfg: func(c *Config) { c.Class.Legacy = false }, svc: service("web", vip10)},
		{name: "no class, only", cfg: func(c *Config) { c.Class.Only = true }, svc: service("web", vip10)},
		{name: "ClusterIP", svc: service("web", vip10, withType(corev1.ServiceTypeClusterIP))},
		{name: "NodePort", svc: service("web", vip10, withType(corev1.ServiceTypeNodePort))},
		{name: "other namespace", cfg: func(c *Config) { c.Namespace = "prod" }, svc: service("web", vip10)},
		{name: "ignored with an invalid address", svc: service("web", "127.0.0.1", withAnnotation(kube.AnnotationIgnore, "true"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const key = "default/web"
			cfg := defaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			f := newFixture(t, cfg, withEndpoints(tt.svc, nodeA)...)
			f.el.leading[lease(key)] = true
			f.mustSync(key)
			f.flushStatus()
			if diff := cmp.Diff([]string(nil), f.log.take()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string(nil), f.events()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string(nil), f.writes()); diff != "" {
				t.Errorf("status writes (-want +got):\n%s", diff)
			}
		})
	}
}

// A Service that vigil stops handling loses the condition vigil wrote on
// it, whatever the condition said ("If vigil had written its status, it
// removes what it wrote").
func TestSyncNoLongerHandledRemovesCondition(t *testing.T) {
	const key = "default/web"
	tests := []struct {
		name       string
		svc        *corev1.Service
		endpoints  []endpoint
		wantReason string
	}{
		{name: "InvalidAddress", svc: service("web", "127.0.0.1"), endpoints: on(nodeA), wantReason: "InvalidAddress"},
		{name: "NoAddress", svc: service("web", ""), endpoints: on(nodeA), wantReason: "NoAddress"},
		{name: "NoEligibleNode", svc: service("web", vip10), wantReason: "NoEligibleNode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, defaultConfig(), tt.svc, slice(tt.svc, tt.endpoints...))
			f.mustSync(key)
			f.flushStatus()
			if got := f.status(key); got.CondReason != tt.wantReason {
				t.Fatalf("setup: status %+v, want reason %s", got, tt.wantReason)
			}
			f.update(key, func(s *corev1.Service) {
				if s.Annotations == nil {
					s.Annotations = map[string]string{}
				}
				s.Annotations[kube.AnnotationIgnore] = "true"
			})
			f.mustSync(key)
			f.flushStatus()
			if diff := cmp.Diff(statusView{}, f.status(key)); diff != "" {
				t.Errorf("status after kube-vip.io/ignore (-want +got):\n%s", diff)
			}
		})
	}
}

// Services vigil cannot announce get a False condition with the reason, and
// a Warning Event once per problem.
func TestSyncCannotAnnounce(t *testing.T) {
	tests := []struct {
		name        string
		svc         *corev1.Service
		wantReason  string
		wantWarning bool
	}{
		{name: "loopback", svc: service("web", "127.0.0.1"), wantReason: "InvalidAddress", wantWarning: true},
		{name: "garbage", svc: service("web", vip10+",bogus"), wantReason: "InvalidAddress", wantWarning: true},
		{name: "only commas", svc: service("web", ","), wantReason: "InvalidAddress", wantWarning: true},
		{name: "invalid spec.loadBalancerIP", svc: service("web", "", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "224.0.0.1" }), wantReason: "InvalidAddress", wantWarning: true},
		{name: "DHCP mixed with static", svc: service("web", "0.0.0.0,198.18.0.50"), wantReason: "InvalidAddress", wantWarning: true},
		{name: "no address", svc: service("web", ""), wantReason: "NoAddress"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const key = "default/web"
			f := newFixture(t, defaultConfig(), withEndpoints(tt.svc, nodeA)...)
			f.el.leading[lease(key)] = true
			var wantEvents []string
			if tt.wantWarning {
				wantEvents = []string{"Warning " + tt.wantReason}
			}
			for i := range 2 {
				f.mustSync(key)
				f.flushStatus()
				if diff := cmp.Diff([]string(nil), f.log.take()); diff != "" {
					t.Errorf("sync %d: calls (-want +got):\n%s", i+1, diff)
				}
				if diff := cmp.Diff(wantEvents, f.events()); diff != "" {
					t.Errorf("sync %d: events (-want +got):\n%s", i+1, diff)
				}
				wantEvents = nil // never twice
			}
			want := statusView{CondStatus: metav1.ConditionFalse, CondReason: tt.wantReason}
			if diff := cmp.Diff(want, f.status(key)); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

// A Warning is sent again when the problem comes back after it was fixed.
func TestSyncWarnsAgainAfterFix(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", "127.0.0.1"), nodeA)...)
	f.el.leading[lease(key)] = true
	setIP := func(ip string) {
		f.update(key, func(s *corev1.Service) { s.Annotations[kube.AnnotationLoadBalancerIPs] = ip })
	}
	syncFlush := func() { f.mustSync(key); f.flushStatus() }
	syncFlush()
	setIP(vip10)
	syncFlush()
	setIP("127.0.0.1")
	syncFlush()
	syncFlush()
	want := []string{"Warning InvalidAddress", "Normal VIPAcquired", "Normal VIPReleased", "Warning InvalidAddress"}
	if diff := cmp.Diff(want, f.events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// Bug 9: every node reaches the same verdict on a malformed Service, but
// only the node whose status write lands reports it: one Warning per
// problem, not one per node.
func TestOneWarningAcrossNodes(t *testing.T) {
	const key = "default/web"
	a := newFixture(t, defaultConfig(), withEndpoints(service("web", "127.0.0.1"), nodeA)...)
	cfgB := defaultConfig()
	cfgB.NodeName = nodeB
	b := newFixtureOn(t, cfgB, a.client)
	b.copyFrom(a)
	enforceResourceVersion(a.client)
	a.mustSync(key)
	b.mustSync(key)
	a.flushStatus()
	b.flushStatus()
	a.mustSync(key)
	b.mustSync(key)
	a.flushStatus()
	b.flushStatus()
	got := append(a.events(), b.events()...)
	if diff := cmp.Diff([]string{"Warning InvalidAddress"}, got); diff != "" {
		t.Errorf("events from both nodes (-want +got):\n%s", diff)
	}
}

// The older of two Services on one address keeps a (port, protocol) pair;
// the newer is not campaigned for.
func TestSyncPortCollision(t *testing.T) {
	tests := []struct {
		name      string
		older     *corev1.Service
		newer     *corev1.Service
		wantNewer []string // calls syncing the newer one
		wantCond  statusView
		wantEvent []string
		wantMsg   string // of the newer's condition, if set
	}{
		{
			name:      "same port",
			older:     service("a", vip10),
			newer:     service("b", vip10, createdAfter(time.Minute)),
			wantCond:  statusView{CondStatus: metav1.ConditionFalse, CondReason: "PortCollision"},
			wantEvent: []string{"Warning PortCollision"},
			wantMsg:   "80/TCP on " + vip10 + " is already used by service default/a",
		},
		{
			name:      "same age: namespace/name decides",
			older:     service("a", vip10),
			newer:     service("b", vip10),
			wantCond:  statusView{CondStatus: metav1.ConditionFalse, CondReason: "PortCollision"},
			wantEvent: []string{"Warning PortCollision"},
		},
		{
			name:      "one of several ports",
			older:     service("a", vip10, withPorts(22, 80)),
			newer:     service("b", vip10, createdAfter(time.Minute), withPorts(443, 80)),
			wantCond:  statusView{CondStatus: metav1.ConditionFalse, CondReason: "PortCollision"},
			wantEvent: []string{"Warning PortCollision"},
		},
		{
			name:      "dual stack, shared IPv6 address",
			older:     service("a", vip6),
			newer:     service("b", vip10+","+vip6, createdAfter(time.Minute)),
			wantCond:  statusView{CondStatus: metav1.ConditionFalse, CondReason: "PortCollision"},
			wantEvent: []string{"Warning PortCollision"},
		},
		{
			name:      "different ports",
			older:     service("a", vip10),
			newer:     service("b", vip10, createdAfter(time.Minute), withPorts(443)),
			wantNewer: []string{"campaign default/kubevip-b"},
		},
		{
			name:  "same port, other protocol",
			older: service("a", vip10),
			newer: service("b", vip10, createdAfter(time.Minute), func(s *corev1.Service) {
				s.Spec.Ports[0].Protocol = corev1.ProtocolUDP
			}),
			wantNewer: []string{"campaign default/kubevip-b"},
		},
		{
			name:      "older one is ignored",
			older:     service("a", vip10, withAnnotation(kube.AnnotationIgnore, "true")),
			newer:     service("b", vip10, createdAfter(time.Minute)),
			wantNewer: []string{"campaign default/kubevip-b"},
		},
		{
			name:      "older one is another class",
			older:     service("a", vip10, withClass("example.com/other")),
			newer:     service("b", vip10, createdAfter(time.Minute)),
			wantNewer: []string{"campaign default/kubevip-b"},
		},
		{
			name:      "other address",
			older:     service("a", vip11),
			newer:     service("b", vip10, createdAfter(time.Minute)),
			wantNewer: []string{"campaign default/kubevip-b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, defaultConfig(), objects(withEndpoints(tt.older, nodeA), withEndpoints(tt.newer, nodeA))...)
			f.mustSync("default/b")
			f.flushStatus()
			if diff := cmp.Diff(tt.wantNewer, f.log.take()); diff != "" {
				t.Errorf("newer: calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCond, f.status("default/b")); diff != "" {
				t.Errorf("newer: status (-want +got):\n%s", diff)
			}
			if c := f.condition("default/b"); tt.wantMsg != "" && (c == nil || c.Message != tt.wantMsg) {
				t.Errorf("newer: condition %+v, want message %q", c, tt.wantMsg)
			}
			f.mustSync("default/b")
			if diff := cmp.Diff(tt.wantEvent, f.events()); diff != "" {
				t.Errorf("newer, synced twice: events (-want +got):\n%s", diff)
			}
			f.log.take()
			if f.a.models.Get(tt.older).Handled {
				f.mustSync("default/a")
				if diff := cmp.Diff([]string{"campaign default/kubevip-a"}, f.log.take()); diff != "" {
					t.Errorf("older: calls (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// Services sharing an address are announced by one node: this node does not
// compete for an address another node announces, unless it has it bound.
func TestSyncSharedAddress(t *testing.T) {
	const a, b = "default/a", "default/b"
	tests := []struct {
		name  string
		setup func(f *fixture)
		want  []string // calls syncing b
	}{
		{
			name: "nobody holds a sibling",
			want: []string{"campaign default/kubevip-b"},
		},
		{
			name:  "another node holds the sibling",
			setup: func(f *fixture) { f.el.heldByOther[lease(a)] = true },
			want:  nil,
		},
		{
			name: "another node holds the sibling, this node was campaigning",
			setup: func(f *fixture) {
				f.el.heldByOther[lease(a)] = true
				f.el.campaigning[lease(b)] = true
			},
			want: []string{"resign default/kubevip-b"},
		},
		{
			name: "another node holds the sibling, this node has the address bound",
			setup: func(f *fixture) {
				f.el.heldByOther[lease(a)] = true
				f.el.campaigning[lease(b)] = true
				f.el.leading[lease(b)] = true
				f.dp.bound[netip.MustParseAddr(vip10)] = true
			},
			want: []string{"campaign default/kubevip-b"},
		},
		{
			name:  "another node holds this Service's own lease",
			setup: func(f *fixture) { f.el.heldByOther[lease(b)] = true },
			want:  []string{"campaign default/kubevip-b"},
		},
		{
			name: "the sibling held elsewhere is not vigil's",
			setup: func(f *fixture) {
				f.el.heldByOther[lease(a)] = true
				f.update(a, func(s *corev1.Service) { s.Annotations[kube.AnnotationIgnore] = "true" })
			},
			want: []string{"campaign default/kubevip-b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, defaultConfig(), objects(
				withEndpoints(service("a", vip10), nodeA),
				withEndpoints(service("b", vip10, createdAfter(time.Minute), withPorts(443)), nodeA),
			)...)
			if tt.setup != nil {
				tt.setup(f)
			}
			f.mustSync(b)
			if diff := cmp.Diff(tt.want, f.log.take()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

// Leading one of two Services on an address: the address is up as long as
// this node leads either.
func TestSyncSharedAddressStaysUpWhileOneIsLed(t *testing.T) {
	const a, b = "default/a", "default/b"
	f := newFixture(t, defaultConfig(), objects(
		withEndpoints(service("a", vip10), nodeA),
		withEndpoints(service("b", vip10, createdAfter(time.Minute), withPorts(443)), nodeA),
	)...)
	f.el.leading[lease(a)] = true
	f.el.leading[lease(b)] = true
	f.mustSync(a, b)
	want := []string{"campaign default/kubevip-a", "up " + vip10, "campaign default/kubevip-b"}
	if diff := cmp.Diff(want, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}

	f.update(b, func(s *corev1.Service) { s.Annotations[kube.AnnotationIgnore] = "true" })
	f.mustSync(b)
	if diff := cmp.Diff([]string{"resign default/kubevip-b"}, f.log.take()); diff != "" {
		t.Errorf("b ignored: calls (-want +got):\n%s", diff)
	}

	f.remove(a)
	f.mustSync(a)
	if diff := cmp.Diff([]string{"down " + vip10, "resign default/kubevip-a"}, f.log.take()); diff != "" {
		t.Errorf("a deleted: calls (-want +got):\n%s", diff)
	}
}

// Changing the address of an announced Service moves the VIP.
func TestSyncAddressChange(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.log.take()

	f.update(key, func(s *corev1.Service) { s.Annotations[kube.AnnotationLoadBalancerIPs] = vip11 })
	f.mustSync(key)
	want := []string{"campaign default/kubevip-web", "down " + vip10, "up " + vip11}
	if diff := cmp.Diff(want, f.log.take(), cmpopts.SortSlices(func(x, y string) bool { return x < y })); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	f.flushStatus()
	if diff := cmp.Diff([]corev1.LoadBalancerIngress{ingress(vip11, 80)}, f.status(key).Ingress); diff != "" {
		t.Errorf("ingress (-want +got):\n%s", diff)
	}
}

// externalTrafficPolicy decides which nodes may announce.
func TestSyncEligibility(t *testing.T) {
	tests := []struct {
		name         string
		local        bool
		endpoints    []endpoint
		wantCampaign bool
		wantStatus   statusView // with this node not leading
	}{
		{name: "Cluster, endpoint here", endpoints: on(nodeA), wantCampaign: true},
		{name: "Cluster, endpoint elsewhere", endpoints: on(nodeB), wantCampaign: true},
		{name: "Cluster, endpoint without node", endpoints: []endpoint{{}}, wantCampaign: true},
		{
			name:       "Cluster, no endpoint",
			wantStatus: statusView{CondStatus: metav1.ConditionFalse, CondReason: "NoEligibleNode"},
		},
		{
			name:       "Cluster, endpoint not ready",
			endpoints:  []endpoint{{node: nodeA, notReady: true}},
			wantStatus: statusView{CondStatus: metav1.ConditionFalse, CondReason: "NoEligibleNode"},
		},
		{name: "Local, endpoint here", local: true, endpoints: on(nodeA), wantCampaign: true},
		{name: "Local, endpoints here and elsewhere", local: true, endpoints: on(nodeB, nodeA), wantCampaign: true},
		{name: "Local, endpoint elsewhere", local: true, endpoints: on(nodeB)},
		{
			name: "Local, endpoint here not ready, ready elsewhere", local: true,
			endpoints: []endpoint{{node: nodeA, notReady: true}, {node: nodeB}},
		},
		{
			name: "Local, no endpoint", local: true,
			wantStatus: statusView{CondStatus: metav1.ConditionFalse, CondReason: "NoEligibleNode"},
		},
		{
			name: "Local, endpoint here not ready", local: true,
			endpoints:  []endpoint{{node: nodeA, notReady: true}},
			wantStatus: statusView{CondStatus: metav1.ConditionFalse, CondReason: "NoEligibleNode"},
		},
		{
			name: "Local, endpoint without node", local: true,
			endpoints:  []endpoint{{}},
			wantStatus: statusView{CondStatus: metav1.ConditionFalse, CondReason: "NoEligibleNode"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const key = "default/web"
			var opts []svcOpt
			if tt.local {
				opts = append(opts, local())
			}
			svc := service("web", vip10, opts...)
			f := newFixture(t, defaultConfig(), svc, slice(svc, tt.endpoints...))
			f.mustSync(key)
			f.flushStatus()
			var want []string
			if tt.wantCampaign {
				want = []string{"campaign default/kubevip-web"}
			}
			if diff := cmp.Diff(want, f.log.take()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantStatus, f.status(key)); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string(nil), f.events()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// Under externalTrafficPolicy Local, the announcing node whose endpoint
// goes away withdraws the VIP before it resigns.
func TestSyncLocalEndpointLeaves(t *testing.T) {
	const key = "default/web"
	svc := service("web", vip10, local())
	f := newFixture(t, defaultConfig(), svc, slice(svc, on(nodeA)...))
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.log.take()

	f.apply(slice(svc, on(nodeB)...))
	f.mustSync(key)
	if diff := cmp.Diff([]string{"down " + vip10, "resign default/kubevip-web"}, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// With one shared Lease, every Service campaigns for it, a lease change
// looks at every Service, and no Service resigns it alone.
func TestSharedLease(t *testing.T) {
	cfg := defaultConfig()
	cfg.PerService = false
	cfg.LeaseName, cfg.LeaseNamespace = "vigil-lease", "kube-system"
	shared := election.Key{Namespace: "kube-system", Name: "vigil-lease"}
	f := newFixture(t, cfg, objects(
		withEndpoints(service("a", vip10, inNamespace("ns1")), nodeA),
		withEndpoints(service("b", vip11, inNamespace("ns2")), nodeA),
		[]runtime.Object{service("c", vip10, inNamespace("ns3"), withType(corev1.ServiceTypeClusterIP))},
	)...)

	for _, k := range []string{"ns1/a", "ns2/b", "ns3/c", "kube-system/vigil-lease"} {
		m, _ := f.a.model(k)
		if got := f.a.leaseKey(k, m); got != shared {
			t.Errorf("leaseKey(%s) = %v, want %v", k, got, shared)
		}
	}

	f.el.leading[shared] = true
	f.mustSync("ns1/a", "ns2/b", "ns3/c")
	want := []string{"campaign " + shared.String(), "up " + vip10, "campaign " + shared.String(), "up " + vip11}
	if diff := cmp.Diff(want, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}

	if got := f.drainQueue(); got != nil {
		t.Fatalf("queue before LeaseChanged: %v", got)
	}
	f.a.LeaseChanged(shared)
	if diff := cmp.Diff([]string{"ns1/a", "ns2/b", "ns3/c"}, f.drainQueue()); diff != "" {
		t.Errorf("enqueued by LeaseChanged (-want +got):\n%s", diff)
	}

	// One Service no longer ours: its VIP goes, the shared lease stays.
	f.update("ns1/a", func(s *corev1.Service) { s.Annotations[kube.AnnotationIgnore] = "true" })
	f.mustSync("ns1/a")
	if diff := cmp.Diff([]string{"down " + vip10}, f.log.take()); diff != "" {
		t.Errorf("a ignored: calls (-want +got):\n%s", diff)
	}
	if !f.el.campaigning[shared] {
		t.Error("shared lease resigned for one Service")
	}
}

// Per-Service leases: a lease change enqueues its Service and the Services
// sharing an address with it.
func TestLeaseChangedPerService(t *testing.T) {
	tests := []struct {
		name string
		key  election.Key
		want []string
	}{
		{name: "service with a sibling", key: lease("default/web"), want: []string{"default/api", "default/web"}},
		{name: "service alone", key: lease("default/other"), want: []string{"default/other"}},
		{name: "service not in the cache", key: lease("default/gone"), want: []string{"default/gone"}},
		{name: "not a service lease", key: election.Key{Namespace: "default", Name: "web"}},
		{name: "shared lease name", key: election.Key{Namespace: "kube-system", Name: "plndr-svcs-lock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, defaultConfig(),
				service("web", vip10), service("api", vip10, withPorts(443)), service("other", vip11))
			f.a.LeaseChanged(tt.key)
			if diff := cmp.Diff(tt.want, f.drainQueue()); diff != "" {
				t.Errorf("enqueued (-want +got):\n%s", diff)
			}
		})
	}
}

// On shutdown every VIP goes down before any lease is released.
func TestShutdownWithdrawsBeforeResigning(t *testing.T) {
	f := newFixture(t, defaultConfig(), objects(
		withEndpoints(service("a", vip10), nodeA),
		withEndpoints(service("b", vip11+","+vip6), nodeA),
	)...)
	f.el.leading[lease("default/a")] = true
	f.el.leading[lease("default/b")] = true
	f.mustSync("default/a", "default/b")
	f.log.take()

	if err := f.a.shutdown(); err != nil {
		t.Fatal(err)
	}
	want := []string{"down " + vip10, "down " + vip11, "down " + vip6, "resignAll"}
	if diff := cmp.Diff(want, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if err := f.a.shutdown(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string(nil), f.log.take()); diff != "" {
		t.Errorf("second shutdown: calls (-want +got):\n%s", diff)
	}
}

// A failed Up fails the sync (so it is retried) and the Service is not
// reported as announced.
func TestSyncUpFails(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
	f.el.leading[lease(key)] = true
	errUp := errors.New("no such interface")
	f.dp.upErr = errUp
	if err := f.sync(key); !errors.Is(err, errUp) {
		t.Fatalf("sync: err = %v, want %v", err, errUp)
	}
	if f.a.intents[key].up {
		t.Errorf("status intent %+v, want not up", f.a.intents[key])
	}
	if diff := cmp.Diff([]string(nil), f.events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	f.flushStatus()
	if diff := cmp.Diff(statusView{}, f.status(key)); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

// processNext syncs one key, reports to Metrics and retries failures.
func TestProcessNext(t *testing.T) {
	tests := []struct {
		name         string
		upErr        error
		wantMetrics  []string
		wantRequeues int
	}{
		{
			name:        "ok",
			wantMetrics: []string{"leading default/web true", "reconciled failed=false", "announced 1"},
		},
		{
			name:         "failed",
			upErr:        errors.New("boom"),
			wantMetrics:  []string{"reconciled failed=true", "announced 0"},
			wantRequeues: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const key = "default/web"
			f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
			f.el.leading[lease(key)] = true
			f.dp.upErr = tt.upErr
			f.a.queue.Add(key)
			if !f.a.processNext(f.ctx) {
				t.Fatal("processNext returned false")
			}
			if diff := cmp.Diff(tt.wantMetrics, f.m.calls); diff != "" {
				t.Errorf("metrics (-want +got):\n%s", diff)
			}
			if got := f.a.queue.NumRequeues(key); got != tt.wantRequeues {
				t.Errorf("requeues = %d, want %d", got, tt.wantRequeues)
			}
		})
	}
}

// A failed status write is retried, rate limited.
func TestProcessStatusRetries(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.client.PrependReactor("update", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("apiserver unavailable")
	})
	f.a.processStatus(f.ctx)
	if got := f.a.statusQueue.NumRequeues(key); got != 1 {
		t.Errorf("requeues after a failed write = %d, want 1", got)
	}
}

// Informer events enqueue the Service and every Service sharing an address
// with it (before or after the change); EndpointSlice events enqueue their
// Service.
func TestEnqueue(t *testing.T) {
	web := service("web", vip10)
	tests := []struct {
		name    string
		enqueue func(a *Agent)
		want    []string
	}{
		{
			name:    "service with a sibling",
			enqueue: func(a *Agent) { a.enqueueService(web) },
			want:    []string{"default/api", "default/web"},
		},
		{
			name: "service moved to another address",
			enqueue: func(a *Agent) {
				moved := web.DeepCopy()
				moved.Annotations[kube.AnnotationLoadBalancerIPs] = vip11
				a.enqueueService(moved)
			},
			want: []string{"default/other", "default/web"},
		},
		{
			name:    "service with an invalid address",
			enqueue: func(a *Agent) { a.enqueueService(service("bad", "bogus")) },
			want:    []string{"default/bad"},
		},
		{
			name: "deleted service, final state unknown",
			enqueue: func(a *Agent) {
				a.enqueueService(cache.DeletedFinalStateUnknown{Key: "default/web", Obj: web})
			},
			want: []string{"default/api", "default/web"},
		},
		{
			name:    "not a service",
			enqueue: func(a *Agent) { a.enqueueService(slice(web)) },
		},
		{
			name:    "endpoint slice",
			enqueue: func(a *Agent) { a.enqueueSlice(slice(web, on(nodeA)...)) },
			want:    []string{"default/web"},
		},
		{
			name: "deleted endpoint slice, final state unknown",
			enqueue: func(a *Agent) {
				a.enqueueSlice(cache.DeletedFinalStateUnknown{Key: "default/web-abcde", Obj: slice(web)})
			},
			want: []string{"default/web"},
		},
		{
			name: "endpoint slice without a service",
			enqueue: func(a *Agent) {
				s := slice(web)
				s.Labels = nil
				a.enqueueSlice(s)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, defaultConfig(), web, service("api", vip10, withPorts(443)), service("other", vip11))
			tt.enqueue(f.a)
			if diff := cmp.Diff(tt.want, f.drainQueue()); diff != "" {
				t.Errorf("enqueued (-want +got):\n%s", diff)
			}
		})
	}
}

// The real informers, started from New's informer group, feed sync and the
// address index.
func TestInformerWiring(t *testing.T) {
	web := service("web", vip10)
	api := service("api", vip10, withPorts(443), createdAfter(time.Minute))
	client := fake.NewClientset(web, slice(web, on(nodeA)...), api, service("other", vip11))
	log := &callLog{}
	el := &fakeElector{log: log, leading: map[election.Key]bool{}, heldByOther: map[election.Key]bool{}, campaigning: map[election.Key]bool{}}
	a, err := New(defaultConfig(), Deps{Client: kubeclienttest.Wrap(client), Elector: el, Dataplane: &fakeDataplane{log: log, bound: map[netip.Addr]bool{}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	a.infs.Start(ctx.Done())
	t.Cleanup(a.infs.Shutdown)
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) || !a.HasSynced() {
		t.Fatal("caches did not sync")
	}
	var users []string
	for _, s := range a.users(netip.MustParseAddr(vip10)) {
		users = append(users, s.Name)
	}
	slices.Sort(users)
	if diff := cmp.Diff([]string{"api", "web"}, users); diff != "" {
		t.Errorf("users of %s (-want +got):\n%s", vip10, diff)
	}
	for _, k := range []string{"default/web", "default/api"} {
		if err := a.sync(ctx, k); err != nil {
			t.Fatalf("sync %s: %v", k, err)
		}
	}
	// api has no endpoints: no node may announce it.
	if diff := cmp.Diff([]string{"campaign default/kubevip-web"}, log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// A Service asking for 0.0.0.0: the leader starts DHCP with the Service's
// stable MAC, waits (DHCPPending), then announces the leased address and
// records it; losing leadership stops DHCP before the lease is resigned.
func TestSyncDHCP(t *testing.T) {
	const key = "default/web"
	svc := service("web", "0.0.0.0")
	f := newFixture(t, defaultConfig(), withEndpoints(svc, nodeA)...)
	f.el.leading[lease(key)] = true
	mac := kube.Parse(svc, defaultConfig().Class).DHCP.MAC.String()

	if err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"campaign " + lease(key).String(), "dhcp start " + key + " mac " + mac + " ipv4 true ipv6 false"}, f.log.take()); diff != "" {
		t.Errorf("first sync calls (-want +got):\n%s", diff)
	}
	f.flushStatus()
	if got := f.status(key); got.CondReason != "DHCPPending" || len(got.Ingress) != 0 {
		t.Errorf("while waiting for a lease: %+v, want DHCPPending and no ingress", got)
	}

	leased := netip.MustParseAddr("198.18.0.201")
	f.dp.leases = map[string][]netip.Addr{key: {leased}}
	if err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"campaign " + lease(key).String(), "up " + leased.String()}, f.log.take()); diff != "" {
		t.Errorf("lease sync calls (-want +got):\n%s", diff)
	}
	f.flushStatus()
	s := f.get(key)
	if s.Annotations[kube.AnnotationRequestedIP] != leased.String() || s.Annotations[kube.AnnotationHWAddr] != mac {
		t.Errorf("annotations = %v, want requestedIP %s and hwaddr %s", s.Annotations, leased, mac)
	}
	if got := f.status(key); got.CondReason != "Announced" || len(got.Ingress) != 1 || got.Ingress[0].IP != leased.String() {
		t.Errorf("after lease: %+v", got)
	}

	f.el.leading[lease(key)] = false
	f.el.heldByOther[lease(key)] = true
	if err := f.sync(key); err != nil {
		t.Fatal(err)
	}
	// Still a candidate, no longer leading: nothing of DHCP stays here.
	if diff := cmp.Diff([]string{"campaign " + lease(key).String(), "down " + leased.String(), "dhcp stop " + key}, f.log.take()); diff != "" {
		t.Errorf("losing the lease (-want +got):\n%s", diff)
	}
}

// dhcp_mode=dual: 0.0.0.0 leases an IPv4 and an IPv6 address; the Service
// is announced once both are up, and its requestedIP records both.
func TestSyncDHCPDual(t *testing.T) {
	const key = "default/web"
	cfg := defaultConfig()
	cfg.DHCPMode = kube.DHCPModeDual
	svc := service("web", "0.0.0.0")
	f := newFixture(t, cfg, withEndpoints(svc, nodeA)...)
	f.el.leading[lease(key)] = true
	mac := kube.Parse(svc, cfg.Class).DHCP.MAC.String()
	v4, v6 := netip.MustParseAddr("198.18.0.201"), netip.MustParseAddr("fd00:1ab::201")

	f.dp.leases = map[string][]netip.Addr{key: {v4}}
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign " + lease(key).String(), "dhcp start " + key + " mac " + mac + " ipv4 true ipv6 true", "up " + v4.String()}, f.log.take()); diff != "" {
		t.Errorf("first sync calls (-want +got):\n%s", diff)
	}
	f.flushStatus()
	if got := f.status(key); got.CondReason != "DHCPPending" || len(got.Ingress) != 0 {
		t.Errorf("with the IPv4 lease only: %+v, want DHCPPending and no ingress", got)
	}

	f.dp.leases[key] = []netip.Addr{v4, v6}
	f.mustSync(key)
	f.flushStatus()
	if got := f.status(key); got.CondReason != "Announced" || len(got.Ingress) != 2 {
		t.Errorf("with both leases: %+v, want Announced with two ingress addresses", got)
	}
	if got, want := f.get(key).Annotations[kube.AnnotationRequestedIP], v4.String()+","+v6.String(); got != want {
		t.Errorf("requestedIP = %q, want %q", got, want)
	}
	// The next sync asks for the same addresses again.
	f.mustSync(key)
	if diff := cmp.Diff([]netip.Addr{v4, v6}, f.dp.dhcp[key].Requested, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("requested addresses (-want +got):\n%s", diff)
	}
}

// Found by the fault campaign (issue 14, seed 14): a DHCP address was bound
// without a kernel lifetime, so a SIGSTOPped holder kept it on its macvlan
// (same MAC, same address) while the next leader leased it again: two
// holders for seconds. It now goes up bound by the term, as a static VIP,
// and the refresher extends it; without leadership it is not extended.
func TestDHCPAddressBoundedByTerm(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", "0.0.0.0"), nodeA)...)
	f.el.leading[lease(key)] = true
	leased := netip.MustParseAddr("198.18.0.201")
	f.dp.leases = map[string][]netip.Addr{key: {leased}}
	f.mustSync(key)
	f.a.refreshAddrs()
	want := termExpiry.Add(-f.a.cfg.AddrMargin)
	if got := f.dp.dhcp[key].Until; !got.Equal(want) {
		t.Errorf("DHCPParams.Until = %v, want the term's expiry less the margin %v", got, want)
	}
	if diff := cmp.Diff([]time.Time{want, want}, f.dp.until); diff != "" {
		t.Errorf("Up untils (sync, refresh) (-want +got):\n%s", diff)
	}
	delete(f.el.leading, lease(key))
	f.a.refreshAddrs()
	if len(f.dp.until) != 2 {
		t.Errorf("refreshed a DHCP address no longer led: %v", f.dp.until)
	}
}

// A status write that fails half-way is retried to the end: the ingress of a
// Service that became ignored is taken back even when the first status
// update hit a conflict.
func TestStatusRetryAfterConflict(t *testing.T) {
	const key = "default/web"
	f := newFixture(t, defaultConfig(), withEndpoints(service("web", vip10), nodeA)...)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.flushStatus()
	if got := f.status(key); got.VIPHost != nodeA || len(got.Ingress) != 1 {
		t.Fatalf("announced status = %+v", got)
	}
	f.update(key, func(s *corev1.Service) { s.Annotations[kube.AnnotationIgnore] = "true" })
	f.mustSync(key)
	failed := false
	f.client.PrependReactor("update", "services", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() == "status" && !failed {
			failed = true
			return true, nil, apierrors.NewConflict(corev1.Resource("services"), "web", errors.New("stale"))
		}
		return false, nil, nil
	})
	f.flushStatus()
	if !failed {
		t.Fatal("the first status update was not attempted")
	}
	f.a.statusQueue.Add(key) // the retry, without waiting for the rate limiter
	f.flushStatus()
	if got := f.status(key); got.VIPHost != "" || len(got.Ingress) != 0 || got.CondStatus != "" {
		t.Errorf("after the retry: %+v, want no vipHost, no ingress, no condition", got)
	}
}

// At start, an address of a handled Service bound by something else (a
// migration from kube-vip) is removed; one of an ignored Service, or of no
// Service, is left alone.
func TestRemoveForeignAtStart(t *testing.T) {
	web := service("web", vip10)
	ignored := service("skip", vip11, withAnnotation("kube-vip.io/ignore", "true"))
	client := fake.NewClientset(web, ignored)
	log := &callLog{}
	el := &fakeElector{log: log, leading: map[election.Key]bool{}, heldByOther: map[election.Key]bool{}, campaigning: map[election.Key]bool{}}
	other := netip.MustParseAddr("198.18.0.99")
	dp := &fakeDataplane{log: log, bound: map[netip.Addr]bool{},
		foreign: map[netip.Addr]bool{netip.MustParseAddr(vip10): true, netip.MustParseAddr(vip11): true, other: true}}
	a, err := New(defaultConfig(), Deps{Client: kubeclienttest.Wrap(client), Elector: el, Dataplane: dp}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	a.infs.Start(ctx.Done())
	t.Cleanup(a.infs.Shutdown)
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		t.Fatal("caches did not sync")
	}
	a.removeForeign()
	if diff := cmp.Diff([]string{"remove foreign " + vip10}, log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// Silent: the addresses of the Services a Lease decides must not answer on
// the link; another Lease's Services do not count.
func TestSilent(t *testing.T) {
	web, api := service("web", vip10), service("api", vip11)
	client := fake.NewClientset(web, api)
	log := &callLog{}
	el := &fakeElector{log: log, leading: map[election.Key]bool{}, heldByOther: map[election.Key]bool{}, campaigning: map[election.Key]bool{}}
	dp := &fakeDataplane{log: log, bound: map[netip.Addr]bool{}, foreign: map[netip.Addr]bool{netip.MustParseAddr(vip11): true}}
	cfg := defaultConfig()
	cfg.PerService = true
	a, err := New(cfg, Deps{Client: kubeclienttest.Wrap(client), Elector: el, Dataplane: dp}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	a.infs.Start(ctx.Done())
	t.Cleanup(a.infs.Shutdown)
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		t.Fatal("caches did not sync")
	}
	if !a.Silent(ctx, lease("default/web")) {
		t.Error("web's Lease: its address answers nowhere, want silent")
	}
	if a.Silent(ctx, lease("default/api")) {
		t.Error("api's Lease: its address still answers, want not silent")
	}
}

// Another load balancer's ingress (MetalLB's, during a switch: no
// kube-vip.io/vipHost) stays while the Service asks for no address: the
// allocator adopts it. An ingress vigil wrote is taken back as before.
func TestForeignIngressKeptWithoutAddress(t *testing.T) {
	const key = "default/web"
	foreign := []corev1.LoadBalancerIngress{{IP: "192.0.2.9"}}
	svc := service("web", "")
	svc.Status.LoadBalancer.Ingress = foreign
	f := newFixture(t, defaultConfig(), withEndpoints(svc, nodeA)...)
	f.mustSync(key)
	f.flushStatus()
	got := f.status(key)
	if diff := cmp.Diff(foreign, got.Ingress); diff != "" || got.CondReason != "NoAddress" {
		t.Errorf("foreign ingress (-want +got):\n%s reason %q", diff, got.CondReason)
	}
	f.update(key, func(s *corev1.Service) { s.Annotations = map[string]string{kube.AnnotationVIPHost: nodeA} })
	f.mustSync(key)
	f.flushStatus()
	if got := f.status(key); len(got.Ingress) != 0 {
		t.Errorf("ingress vigil wrote (vipHost set) kept: %+v", got.Ingress)
	}
}

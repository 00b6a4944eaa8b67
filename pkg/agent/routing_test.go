package agent

import (
	"context"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/plan"
)

// fakeRouter implements Router, logging every change into the call log.
type fakeRouter struct {
	log      *callLog
	sessions int // established (Peers)
	adv      map[netip.Addr]bool
	calls    map[netip.Addr]int // Advertise calls per address
	checks   atomic.Int32       // Check calls
}

func (r *fakeRouter) Check() error { r.checks.Add(1); return nil }

func (r *fakeRouter) Advertise(_ context.Context, a netip.Addr, _ string) error {
	if r.calls == nil {
		r.calls = map[netip.Addr]int{}
	}
	r.calls[a]++
	if !r.adv[a] {
		r.log.add("advertise %s", a)
		r.adv[a] = true
	}
	return nil
}

func (r *fakeRouter) Withdraw(_ context.Context, a netip.Addr) error {
	if r.adv[a] {
		r.log.add("withdraw %s", a)
		delete(r.adv, a)
	}
	return nil
}

func (r *fakeRouter) Peers() int { return r.sessions }

func (r *fakeRouter) Advertised() []netip.Addr {
	out := make([]netip.Addr, 0, len(r.adv))
	for a := range r.adv {
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y netip.Addr) int { return x.Compare(y) })
	return out
}

func bgpFixture(t *testing.T, routing plan.Routing, l2 bool) (*fixture, *fakeRouter) {
	t.Helper()
	cfg := defaultConfig()
	cfg.Routing, cfg.L2Off = routing, !l2
	f := newFixture(t, cfg)
	r := &fakeRouter{log: f.log, adv: map[netip.Addr]bool{}, sessions: 2}
	f.a.router = r
	return f, r
}

// BGP without an election (ECMP): every eligible node advertises, nothing
// campaigns, L2 stays off; only the holder of the status Lease writes the
// status (no vipHost: there is no single host).
func TestRoutingECMP(t *testing.T) {
	const key = "default/web"
	f, _ := bgpFixture(t, plan.RoutingECMP, false)
	for _, o := range withEndpoints(service("web", vip10), nodeA) {
		f.apply(o)
	}
	f.mustSync(key)
	f.flushStatus()
	if diff := cmp.Diff([]string{"advertise " + vip10}, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(statusView{}, f.status(key)); diff != "" {
		t.Errorf("status written without the status Lease (-want +got):\n%s", diff)
	}
	f.el.leading[f.a.cfg.StatusLease] = true
	f.mustSync(key)
	f.flushStatus()
	got := f.status(key)
	if got.CondStatus != metav1.ConditionTrue || got.VIPHost != "" || len(got.Ingress) != 1 {
		t.Errorf("status writer: %+v, want Announced, an ingress and no vipHost", got)
	}
	if c := f.condition(key); c == nil || c.Message != "BGP: "+vip10+" from 1 nodes to 2 peers" {
		t.Errorf("condition %+v", c)
	}
	// Ignored: withdrawn.
	f.update(key, func(s *corev1.Service) { s.Annotations[kube.AnnotationIgnore] = "true" })
	f.mustSync(key)
	if diff := cmp.Diff([]string{"withdraw " + vip10}, f.log.take()); diff != "" {
		t.Errorf("ignored: calls (-want +got):\n%s", diff)
	}
}

// Local policy: advertised only while this node has a ready endpoint; two
// Services on one address keep one route until the last goes.
func TestRoutingLocalAndShared(t *testing.T) {
	f, _ := bgpFixture(t, plan.RoutingECMP, false)
	web := service("web", vip10, local())
	api := service("api", vip10, withPorts(443))
	f.apply(web)
	f.apply(slice(web, on(nodeB)...))
	f.mustSync("default/web")
	if got := f.log.take(); len(got) != 0 {
		t.Errorf("endpoint elsewhere: calls %v, want none", got)
	}
	f.apply(slice(web, on(nodeA)...))
	f.mustSync("default/web")
	if diff := cmp.Diff([]string{"advertise " + vip10}, f.log.take()); diff != "" {
		t.Errorf("endpoint here: calls (-want +got):\n%s", diff)
	}
	for _, o := range withEndpoints(api, nodeB) {
		f.apply(o)
	}
	f.mustSync("default/api")
	f.apply(slice(web, on(nodeB)...))
	f.mustSync("default/web")
	if got := f.log.take(); len(got) != 0 {
		t.Errorf("endpoint left but api still routed here: calls %v, want none", got)
	}
	f.remove("default/api")
	f.mustSync("default/api")
	if diff := cmp.Diff([]string{"withdraw " + vip10}, f.log.take()); diff != "" {
		t.Errorf("last Service gone: calls (-want +got):\n%s", diff)
	}
}

// svc_election=true with BGP: only the Lease holder advertises; it writes
// the status as an L2 holder does.
func TestRoutingElected(t *testing.T) {
	const key = "default/web"
	f, _ := bgpFixture(t, plan.RoutingElected, false)
	for _, o := range withEndpoints(service("web", vip10), nodeA) {
		f.apply(o)
	}
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign " + lease(key).String()}, f.log.take()); diff != "" {
		t.Errorf("not leading: calls (-want +got):\n%s", diff)
	}
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.flushStatus()
	if diff := cmp.Diff([]string{"campaign " + lease(key).String(), "advertise " + vip10}, f.log.take()); diff != "" {
		t.Errorf("leading: calls (-want +got):\n%s", diff)
	}
	if got := f.status(key); got.VIPHost != nodeA || got.CondStatus != metav1.ConditionTrue {
		t.Errorf("status %+v, want announced by %s", got, nodeA)
	}
	delete(f.el.leading, lease(key))
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign " + lease(key).String(), "withdraw " + vip10}, f.log.take()); diff != "" {
		t.Errorf("lost the Lease: calls (-want +got):\n%s", diff)
	}
}

// An elected BGP-only Service needs a session: a node with none does not
// campaign, and the holder whose sessions all went down resigns (withdrawing
// the route it could not carry), so a node with a session takes it over;
// when a session is back it campaigns again. (Found by the fault campaign:
// a holder cut off the LAN kept the Service, unreachable, until its session
// came back seconds after the cable.)
func TestRoutingElectedNeedsASession(t *testing.T) {
	const key = "default/web"
	f, r := bgpFixture(t, plan.RoutingElected, false)
	r.sessions = 0
	for _, o := range withEndpoints(service("web", vip10), nodeA) {
		f.apply(o)
	}
	f.mustSync(key)
	if got := f.log.take(); len(got) != 0 {
		t.Errorf("no session: calls %v, want none (no campaign)", got)
	}
	r.sessions = 1
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	if diff := cmp.Diff([]string{"campaign " + lease(key).String(), "advertise " + vip10}, f.log.take()); diff != "" {
		t.Errorf("session up, leading: calls (-want +got):\n%s", diff)
	}
	r.sessions = 0
	f.mustSync(key)
	if diff := cmp.Diff([]string{"withdraw " + vip10, "resign " + lease(key).String()}, f.log.take()); diff != "" {
		t.Errorf("sessions down: calls (-want +got):\n%s", diff)
	}
}

// L2 and BGP at once: the elected node binds and announces on the LAN, and
// every eligible node advertises the route.
func TestRoutingWithL2(t *testing.T) {
	const key = "default/web"
	f, _ := bgpFixture(t, plan.RoutingECMP, true)
	for _, o := range withEndpoints(service("web", vip10), nodeA) {
		f.apply(o)
	}
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	want := []string{"campaign " + lease(key).String(), "up " + vip10, "advertise " + vip10}
	if diff := cmp.Diff(want, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	// Shutdown: the VIP goes down and the route is withdrawn before the
	// Leases are released.
	if err := f.a.shutdown(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"down " + vip10, "withdraw " + vip10, "resignAll"}, f.log.take()); diff != "" {
		t.Errorf("shutdown (-want +got):\n%s", diff)
	}
}

// fakePolicy: pool "lan" is L2 only, "routed" BGP only, anything else both.
type fakePolicy struct{}

func (fakePolicy) Synced() bool { return true }

func (fakePolicy) Modes(pool string) (bool, bool) {
	switch pool {
	case "lan":
		return true, false
	case "routed":
		return false, true
	}
	return true, true
}

// One L2 pool and one BGP pool at once: each Service goes out only the way
// its pool's advertisements say.
func TestRoutingPerPool(t *testing.T) {
	f, _ := bgpFixture(t, plan.RoutingECMP, true)
	f.a.policy = fakePolicy{}
	lan := service("lan", vip10, withAnnotation(kube.AnnotationAllocatedFrom, "lan"))
	routed := service("routed", vip11, withAnnotation(kube.AnnotationAllocatedFrom, "routed"))
	for _, o := range append(withEndpoints(lan, nodeA), withEndpoints(routed, nodeA)...) {
		f.apply(o)
	}
	f.el.leading[lease("default/lan")] = true
	f.el.leading[lease("default/routed")] = true
	f.mustSync("default/lan", "default/routed")
	want := []string{"campaign " + lease("default/lan").String(), "up " + vip10, "advertise " + vip11}
	if diff := cmp.Diff(want, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// An advertised address is handed to the router again at every sync: the
// advertisement objects may have changed its routes (attributes,
// aggregation); the router sends only what changed.
func TestRoutesFollowAdvertisements(t *testing.T) {
	f, r := bgpFixture(t, plan.RoutingECMP, false)
	for _, o := range withEndpoints(service("web", vip10), nodeA) {
		f.apply(o)
	}
	f.mustSync("default/web")
	f.mustSync("default/web")
	if n := r.calls[netip.MustParseAddr(vip10)]; n != 2 {
		t.Errorf("Advertise called %d times over two syncs, want 2", n)
	}
	if diff := cmp.Diff([]string{"advertise " + vip10}, f.log.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// Every resync (30 s) has the BGP dataplane check its ARP guard, which
// trusts its own writes in between.
func TestResyncChecksRouter(t *testing.T) {
	f, r := bgpFixture(t, plan.RoutingECMP, false)
	clk := clocktest.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	resets := make(chan time.Time, 16)
	clk.OnReset(func(at time.Time) { resets <- at })
	f.a.clock = clk
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); f.a.tick(ctx) }()
	for range 2 { // the refresh and resync timers are armed
		<-resets
	}
	clk.Step(f.a.resyncPeriod)
	timeout := time.After(5 * time.Second)
	for r.checks.Load() == 0 {
		select {
		case <-resets: // the tick re-arms a timer after each round
		case <-timeout:
			t.Fatal("no Check within 5 s of a resync period")
		}
	}
	cancel()
	<-done
	if got := r.checks.Load(); got != 1 {
		t.Errorf("Check calls after one resync period = %d, want 1", got)
	}
}

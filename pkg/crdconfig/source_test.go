package crdconfig

import (
	"bytes"
	"context"
	"github.com/google/go-cmp/cmp"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// fakeDiscovery serves the four resources or none.
type fakeDiscovery struct {
	mu     sync.Mutex
	served bool
	err    error
}

func (d *fakeDiscovery) ServerResourcesForGroupVersionWithContext(_ context.Context, gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.err != nil:
		return nil, d.err
	case !d.served || gv != GroupVersion.String():
		return nil, apierrors.NewNotFound(schema.GroupResource{}, gv)
	}
	list := &metav1.APIResourceList{GroupVersion: gv}
	for _, r := range resources {
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: r.Resource})
	}
	list.APIResources = append(list.APIResources, metav1.APIResource{Name: "bgppeers/status"})
	return list, nil
}

func (d *fakeDiscovery) set(served bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.served, d.err = served, err
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

const interval = 30 * time.Second

// env runs a Source against fake clients.
type env struct {
	t       *testing.T
	dyn     *dynamicfake.FakeDynamicClient
	cs      *fake.Clientset
	disco   *fakeDiscovery
	rec     *record.FakeRecorder
	clk     *clocktest.Fake
	log     *syncBuffer
	src     *Source
	changes atomic.Int32
	writer  atomic.Bool

	sessMu   sync.Mutex
	sessions map[netip.Addr][]Session // what the nodes published, by peer
}

func (e *env) setSessions(peer netip.Addr, ss ...Session) {
	e.sessMu.Lock()
	e.sessions[peer] = ss
	e.sessMu.Unlock()
	e.src.Resync()
}

func (e *env) sessionsWith(peer netip.Addr, asn uint32) []Session {
	e.sessMu.Lock()
	defer e.sessMu.Unlock()
	if asn != 65000 {
		return nil
	}
	return slices.Clone(e.sessions[peer])
}

func newEnv(t *testing.T, served bool, objs ...runtime.Object) *env {
	t.Helper()
	return newEnvAs(t, served, true, objs...)
}

// newEnvAs is newEnv with the source a status writer or not from the
// start (before its first sync).
func newEnvAs(t *testing.T, served, writer bool, objs ...runtime.Object) *env {
	t.Helper()
	return newEnvWith(t, &fakeDiscovery{served: served}, writer, objs...)
}

// newEnvWith is newEnvAs with discovery served by disco.
func newEnvWith(t *testing.T, disco *fakeDiscovery, writer bool, objs ...runtime.Object) *env {
	t.Helper()
	listKinds := map[schema.GroupVersionResource]string{}
	for _, r := range resources {
		listKinds[r] = map[string]string{"bgppeers": "BGPPeerList", "bgpadvertisements": "BGPAdvertisementList",
			"bfdprofiles": "BFDProfileList", "l2advertisements": "L2AdvertisementList"}[r.Resource]
	}
	e := &env{t: t, dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, objs...),
		cs: fake.NewClientset(), disco: disco, rec: record.NewFakeRecorder(100),
		clk: clocktest.New(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)), log: &syncBuffer{},
		sessions: map[netip.Addr][]Session{}}
	e.writer.Store(writer)
	e.src = New(e.disco, e.dyn, e.cs.CoreV1().Secrets("vigil"), Options{
		Namespace: "vigil", Interval: interval, Clock: e.clk, Recorder: e.rec,
		Log:      slog.New(slog.NewTextHandler(e.log, nil)),
		Writes:   e.writer.Load,
		OnChange: func() { e.changes.Add(1) },
		Sessions: e.sessionsWith,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.src.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// await waits until cond holds (each Run loop re-arms its timer, which
// wakes the fake clock's watchers).
func (e *env) await(what string, cond func() bool) {
	e.t.Helper()
	if !e.clk.Await(10*time.Second, cond) {
		e.t.Fatalf("timed out waiting for %s; config %+v\n%s", what, e.src.Config(), e.dumpLog())
	}
}

// tick moves the clock by the interval once Run is waiting on its timer.
func (e *env) tick() {
	e.t.Helper()
	e.await("Run to wait on its timer", func() bool { return len(e.clk.Pending()) > 0 })
	e.clk.Step(interval)
}

func (e *env) peerNames() []string {
	var out []string
	for _, p := range e.src.Config().Peers {
		out = append(out, p.Name)
	}
	return out
}

// valid returns a BGPPeer's Valid condition from the fake API server.
func (e *env) valid(name string) *metav1.Condition {
	return meta.FindStatusCondition(e.status(name).Conditions, ConditionValid)
}

// status reads a BGPPeer's status from the fake API server.
func (e *env) status(name string) peerStatus {
	u, err := e.dyn.Resource(BGPPeers).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := readStatus(u)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// statusWrites counts the status updates sent so far.
func (e *env) statusWrites() int {
	n := 0
	for _, a := range e.dyn.Actions() {
		if a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

// events drains the recorded events.
func (e *env) events() []string {
	var out []string
	for {
		select {
		case ev := <-e.rec.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func basicAuth(name, pw string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil", Name: name}, Type: corev1.SecretTypeBasicAuth,
		Data: map[string][]byte{"password": []byte(pw)}}
}

const peerSpecYAML = "myASN: 64512\npeerASN: 65000\npeerAddress: 198.18.0.1\n"

// Without the CRDs the source says so once, serves an empty configuration,
// and picks the objects up once the CRDs are installed.
func TestSourceCRDsOptional(t *testing.T) {
	e := newEnv(t, false, obj(t, "BGPPeer", "tor1", peerSpecYAML), obj(t, "L2Advertisement", "lan", "{ipAddressPools: [lan]}"))
	e.await("synced", e.src.Synced)
	if cfg := e.src.Config(); len(cfg.Peers)+len(cfg.L2Advertisements) != 0 {
		t.Fatalf("config without CRDs: %+v", cfg)
	}
	e.tick()
	e.tick()
	e.await("a look at discovery", func() bool { return e.clk.Elapsed() == 2*interval && len(e.clk.Pending()) > 0 })
	if n := e.log.count("CRDs are not installed"); n != 1 {
		t.Errorf("'not installed' logged %d times, want once", n)
	}

	e.disco.set(true, nil)
	before := e.changes.Load()
	e.tick()
	e.await("the peer", func() bool { return len(e.src.Config().Peers) == 1 && len(e.src.Config().L2Advertisements) == 1 })
	if e.changes.Load() == before {
		t.Error("OnChange not called")
	}
	if n := e.log.count("CRDs are installed"); n != 1 {
		t.Errorf("'installed' logged %d times, want once", n)
	}

	// The CRDs go: so do their objects.
	e.disco.set(false, nil)
	e.tick()
	e.await("no peers", func() bool { return len(e.src.Config().Peers) == 0 })
}

// While discovery fails (the API server away) the source serves what it
// has and asks again every second, not every Interval: an agent started
// during an API server outage had its BGP objects only up to 30 s after
// the API server was back.
func TestSourceDiscoveryRetriedSoon(t *testing.T) {
	e := newEnvWith(t, &fakeDiscovery{served: true, err: apierrors.NewServiceUnavailable("down")}, true, obj(t, "BGPPeer", "tor1", peerSpecYAML))
	e.await("synced", e.src.Synced)
	e.await("Run to wait on its timer", func() bool { return len(e.clk.Pending()) > 0 })
	e.disco.set(true, nil)
	e.clk.Step(time.Second)
	e.await("the peer a second later", func() bool { return len(e.src.Config().Peers) == 1 })
}

// A bad object is left out with a Warning naming the field (and Valid=False
// on a BGPPeer); the others keep working; a Secret created later is read.
func TestSourceBadObjects(t *testing.T) {
	e := newEnv(t, true,
		obj(t, "BGPPeer", "good", peerSpecYAML),
		obj(t, "BGPPeer", "md5", peerSpecYAML+"passwordSecret: {name: tor-md5}\n"),
		obj(t, "BGPPeer", "slow-bfd", peerSpecYAML+"bfdProfile: bad\n"),
		obj(t, "BFDProfile", "bad", "{detectMultiplier: 1}"),
		obj(t, "BGPAdvertisement", "adv", "{ipAddressPools: [routed], communities: [\"65000:1\"]}"),
		obj(t, "BGPAdvertisement", "bad-adv", "{communities: [\"no-export\"]}"),
		obj(t, "L2Advertisement", "lan", "{ipAddressPools: [lan]}"),
	)
	e.await("synced", e.src.Synced)
	e.await("conditions", func() bool { return e.valid("good") != nil && e.valid("md5") != nil && e.valid("slow-bfd") != nil })
	cfg := e.src.Config()
	if got := strings.Join(e.peerNames(), ","); got != "good" {
		t.Errorf("peers %s, want good", got)
	}
	if len(cfg.BGPAdvertisements) != 1 || cfg.BGPAdvertisements[0].Name != "adv" || len(cfg.L2Advertisements) != 1 {
		t.Errorf("advertisements %+v / %+v, want adv and lan", cfg.BGPAdvertisements, cfg.L2Advertisements)
	}
	for name, want := range map[string]string{"good": "Valid", "md5": "InvalidPasswordSecret", "slow-bfd": "InvalidBfdProfile"} {
		if c := e.valid(name); c.Reason != want || (c.Status == metav1.ConditionTrue) != (want == "Valid") {
			t.Errorf("%s: Valid condition %s %s %q, want reason %s", name, c.Status, c.Reason, c.Message, want)
		}
	}
	if c := e.valid("md5"); !strings.Contains(c.Message, "Secret vigil/tor-md5 not found") {
		t.Errorf("md5 condition message %q does not name the Secret", c.Message)
	}
	evs := strings.Join(e.events(), "\n")
	for _, want := range []string{"Warning InvalidPasswordSecret BGPPeer md5", "Warning InvalidBfdProfile BGPPeer slow-bfd",
		"Warning InvalidDetectMultiplier BFDProfile bad", "Warning InvalidCommunities BGPAdvertisement bad-adv left out: communities[0]"} {
		if !strings.Contains(evs, want) {
			t.Errorf("no event %q in:\n%s", want, evs)
		}
	}
	if strings.Count(evs, "\n")+1 != 4 {
		t.Errorf("want 4 events, got:\n%s", evs)
	}

	// Nothing new: no new event, no status write.
	e.tick()
	e.tick()
	e.await("two rebuilds", func() bool { return e.clk.Elapsed() == 2*interval && len(e.clk.Pending()) > 0 })
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("events repeated: %v", evs)
	}

	// The Secret appears: read within the interval.
	if _, err := e.cs.CoreV1().Secrets("vigil").Create(context.Background(), basicAuth("tor-md5", "s3cret"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.tick()
	e.await("the md5 peer", func() bool { return len(e.src.Config().Peers) == 2 })
	if p := e.src.Config().Peers[0]; p.Name != "good" || e.src.Config().Peers[1].Password != "s3cret" {
		t.Errorf("peers %+v", e.src.Config().Peers)
	}
	e.await("md5 valid", func() bool { return e.valid("md5").Status == metav1.ConditionTrue })
}

// A Secret that cannot be read for a while (the API server is down) keeps
// the password last read: the session does not drop with the API server.
func TestSourcePasswordSurvivesAPIOutage(t *testing.T) {
	e := newEnv(t, true, obj(t, "BGPPeer", "md5", peerSpecYAML+"passwordSecret: {name: tor-md5, namespace: vigil}\n"))
	if _, err := e.cs.CoreV1().Secrets("vigil").Create(context.Background(), basicAuth("tor-md5", "s3cret"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.await("the peer with its password", func() bool {
		ps := e.src.Config().Peers
		return len(ps) == 1 && ps[0].Password == "s3cret"
	})
	// A first build may have run before the Secret was created (a Warning
	// then, rightly): only what the outage brings counts.
	e.events()
	var gets atomic.Int32
	e.cs.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets.Add(1)
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	e.disco.set(true, apierrors.NewServiceUnavailable("down"))
	e.tick()
	e.await("a failed read", func() bool { return gets.Load() > 0 && len(e.clk.Pending()) > 0 })
	if ps := e.src.Config().Peers; len(ps) != 1 || ps[0].Password != "s3cret" {
		t.Errorf("peers during the outage: %+v", ps)
	}
	if c := e.valid("md5"); c.Status != metav1.ConditionTrue {
		t.Errorf("condition during the outage: %+v", c)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("events during the outage: %v", evs)
	}
}

// A password Secret in another namespace is refused (vigil reads its own
// namespace only), naming passwordSecret.namespace.
func TestSourceSecretOtherNamespace(t *testing.T) {
	e := newEnv(t, true, obj(t, "BGPPeer", "md5", peerSpecYAML+"passwordSecret: {name: tor-md5, namespace: default}\n"))
	e.await("condition", func() bool { return e.valid("md5") != nil })
	if c := e.valid("md5"); c.Status != metav1.ConditionFalse || c.Reason != "InvalidPasswordSecret" || !strings.Contains(c.Message, "passwordSecret.namespace") {
		t.Errorf("condition %+v", c)
	}
	if n := len(e.src.Config().Peers); n != 0 {
		t.Errorf("%d peers, want none", n)
	}
}

// An agent that is not the writer writes no Event and no status.
func TestSourceNotWriter(t *testing.T) {
	// Not the writer from the start: storing false after newEnv raced its
	// first sync (CI saw four status writes).
	e := newEnvAs(t, true, false, obj(t, "BGPPeer", "md5", peerSpecYAML+"passwordSecret: {name: nope}\n"), obj(t, "BGPPeer", "good", peerSpecYAML))
	e.tick()
	e.await("synced", func() bool { return e.src.Synced() && len(e.src.Config().Peers) == 1 && len(e.clk.Pending()) > 0 })
	for _, a := range e.dyn.Actions() {
		if a.GetSubresource() == "status" {
			t.Errorf("status written: %v", a)
		}
	}
	if evs := e.events(); len(evs) != 0 {
		t.Errorf("events: %v", evs)
	}
	// It becomes the writer: it tells.
	e.writer.Store(true)
	e.tick()
	e.await("condition", func() bool { return e.valid("md5") != nil })
	if c := e.valid("md5"); c.Reason != "InvalidPasswordSecret" {
		t.Errorf("condition %+v", c)
	}
}

// Config is built once per change: the model is what the objects say.
func TestSourceModel(t *testing.T) {
	e := newEnv(t, true,
		obj(t, "BFDProfile", "fast", "{receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}"),
		obj(t, "BGPPeer", "tor1", peerSpecYAML+"bfdProfile: fast\nholdTime: 9s\nnodeSelectors: [{matchLabels: {rack: \"1\"}}]\n"),
		obj(t, "BGPAdvertisement", "routed", "{ipAddressPools: [routed], peers: [tor1], localPref: 150}"),
	)
	e.await("peer", func() bool { return len(e.src.Config().Peers) == 1 })
	cfg := e.src.Config()
	p := cfg.Peers[0]
	if p.BFD == nil || p.BFD.ReceiveInterval != 100*time.Millisecond || p.HoldTime != 9*time.Second || p.KeepaliveTime != 3*time.Second ||
		!p.SelectsNode(map[string]string{"rack": "1"}) || p.SelectsNode(map[string]string{"rack": "2"}) {
		t.Errorf("peer %+v (BFD %+v)", p, p.BFD)
	}
	l2, bgp := cfg.For("routed", nil)
	if len(l2) != 0 || len(bgp) != 1 || bgp[0].LocalPref != 150 || !bgp[0].SelectsPeer("tor1") {
		t.Errorf("For(routed) = %+v, %+v", l2, bgp)
	}
	if l2, bgp := cfg.For("lan", nil); len(bgp) != 0 || len(l2) != 1 || l2[0].Name != lbconfig.DefaultL2Name {
		t.Errorf("For(lan) = %+v, %+v; want the L2 default", l2, bgp)
	}
}

func (e *env) dumpLog() string { e.log.mu.Lock(); defer e.log.mu.Unlock(); return e.log.buf.String() }

// A password Secret is read at most once per interval however often the
// objects change, and a new password is used after the interval.
func TestSourceSecretReadOncePerInterval(t *testing.T) {
	e := newEnv(t, true, obj(t, "BGPPeer", "md5", peerSpecYAML+"passwordSecret: {name: tor-md5}\n"))
	if _, err := e.cs.CoreV1().Secrets("vigil").Create(context.Background(), basicAuth("tor-md5", "one"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.await("the peer", func() bool { return len(e.src.Config().Peers) == 1 })
	var gets, resets atomic.Int32
	e.cs.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets.Add(1)
		return false, nil, nil
	})
	e.clk.OnReset(func(time.Time) { resets.Add(1) })
	for i := range 3 {
		e.src.enqueue()
		e.await("a rebuild", func() bool { return resets.Load() > int32(i) })
	}
	if n := gets.Load(); n != 0 {
		t.Errorf("%d Secret reads in 3 rebuilds within the interval, want 0", n)
	}
	sec := basicAuth("tor-md5", "two")
	if _, err := e.cs.CoreV1().Secrets("vigil").Update(context.Background(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.tick()
	e.await("the new password", func() bool { ps := e.src.Config().Peers; return len(ps) == 1 && ps[0].Password == "two" })
	if n := gets.Load(); n != 1 {
		t.Errorf("%d Secret reads after the interval, want 1", n)
	}
}

// The status writer puts each node's session with a peer in the BGPPeer's
// status, with an Established condition naming the nodes whose session is
// not up; it writes again only when that changes.
func TestSourceSessionStatus(t *testing.T) {
	peer := netip.MustParseAddr("198.18.0.1")
	e := newEnv(t, true, obj(t, "BGPPeer", "tor", peerSpecYAML))
	e.tick()
	e.await("Unknown without sessions", func() bool { return e.established("tor").Status == metav1.ConditionUnknown })

	e.setSessions(peer, Session{Node: "node2", State: "active", LastError: "dial tcp 198.18.0.1:179: connection refused"},
		Session{Node: "node1", State: SessionEstablished})
	e.await("False naming node2", func() bool { return e.established("tor").Status == metav1.ConditionFalse })
	want := peerStatus{Sessions: []Session{{Node: "node1", State: SessionEstablished},
		{Node: "node2", State: "active", LastError: "dial tcp 198.18.0.1:179: connection refused"}}}
	got := e.status("tor")
	if diff := cmp.Diff(want.Sessions, got.Sessions); diff != "" {
		t.Errorf("sessions (-want +got):\n%s", diff)
	}
	if c := e.established("tor"); c.Message != "1 of 2 node(s) not established: node2: active (dial tcp 198.18.0.1:179: connection refused)" {
		t.Errorf("message %q", c.Message)
	}

	e.setSessions(peer, Session{Node: "node1", State: SessionEstablished}, Session{Node: "node2", State: SessionEstablished})
	e.await("True", func() bool { return e.established("tor").Status == metav1.ConditionTrue })
	if v := e.valid("tor"); v == nil || v.Status != metav1.ConditionTrue {
		t.Errorf("Valid lost: %+v", v)
	}
	// Once the informer has the written status, nothing more is written.
	e.await("the cache to show True", func() bool {
		objs, _ := e.src.lists()
		for _, o := range objs[BGPPeers] {
			if st, err := readStatus(o); err == nil && len(st.Sessions) == 2 && st.Sessions[1].State == SessionEstablished {
				return true
			}
		}
		return false
	})
	writes := e.statusWrites()
	e.src.Resync()
	e.tick()
	e.await("Run idle", func() bool { return len(e.clk.Pending()) > 0 })
	if n := e.statusWrites(); n != writes {
		t.Errorf("status written %d more times with nothing changed", n-writes)
	}
}

func (e *env) established(name string) metav1.Condition {
	c := meta.FindStatusCondition(e.status(name).Conditions, ConditionEstablished)
	if c == nil {
		return metav1.Condition{}
	}
	return *c
}

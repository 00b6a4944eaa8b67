package metallb

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/yaml"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

type fakeDiscovery struct {
	mu     sync.Mutex
	served bool
	err    error
}

func (d *fakeDiscovery) ServerResourcesForGroupVersionWithContext(_ context.Context, gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return nil, d.err
	}
	list := &metav1.APIResourceList{GroupVersion: gv}
	for _, r := range Resources {
		if d.served && r.GroupVersion().String() == gv {
			list.APIResources = append(list.APIResources, metav1.APIResource{Name: r.Resource})
		}
	}
	if len(list.APIResources) == 0 {
		return nil, apierrors.NewNotFound(schema.GroupResource{}, gv)
	}
	return list, nil
}

func (d *fakeDiscovery) set(served bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.served = served
}

func (d *fakeDiscovery) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

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

type env struct {
	t       *testing.T
	dyn     *dynamicfake.FakeDynamicClient
	disco   *fakeDiscovery
	rec     *record.FakeRecorder
	clk     *clocktest.Fake
	log     *syncBuffer
	src     *Source
	changes atomic.Int32
}

func obj(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetNamespace(DefaultNamespace)
	return u
}

func newEnv(t *testing.T, served bool, objs ...runtime.Object) *env {
	t.Helper()
	return newEnvWith(t, &fakeDiscovery{served: served}, objs...)
}

// newEnvWith is newEnv with discovery served by disco.
func newEnvWith(t *testing.T, disco *fakeDiscovery, objs ...runtime.Object) *env {
	t.Helper()
	listKinds := map[schema.GroupVersionResource]string{configMaps: "ConfigMapList"}
	for _, r := range Resources {
		listKinds[r] = r.Resource + "List"
	}
	e := &env{t: t, dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, objs...),
		disco: disco, rec: record.NewFakeRecorder(100),
		clk: clocktest.New(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)), log: &syncBuffer{}}
	e.src = New(e.disco, e.dyn, fake.NewClientset().CoreV1().Secrets(DefaultNamespace), Options{
		Interval: interval, Clock: e.clk, Recorder: e.rec, Log: slog.New(slog.NewTextHandler(e.log, nil)),
		Writes: func() bool { return true }, OnChange: func() { e.changes.Add(1) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.src.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func (e *env) await(what string, cond func() bool) {
	e.t.Helper()
	if !e.clk.Await(10*time.Second, cond) {
		e.t.Fatalf("timed out waiting for %s; pools %v\n%s", what, e.poolNames(), e.log.buf.String())
	}
}

func (e *env) tick() {
	e.t.Helper()
	e.await("Run to wait on its timer", func() bool { return len(e.clk.Pending()) > 0 })
	e.clk.Step(interval)
}

func (e *env) poolNames() []string {
	var out []string
	for _, p := range e.src.Pools() {
		out = append(out, p.Name)
	}
	return out
}

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

const (
	goodPool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: good, uid: u1}\nspec: {addresses: [10.0.0.0/30]}"
	badPool  = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bad, uid: u2}\nspec: {addresses: [nonsense]}"
	legacyCM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata: {config: 'address-pools: [{name: old, protocol: layer2, addresses: [10.9.0.0/30]}]'}"
)

// The CRDs are optional (said once); the ConfigMap alone serves; a bad
// object is told once by a Warning Event naming the field, and the good
// ones are used; once the CRDs are installed their objects are picked up.
func TestSourceServes(t *testing.T) {
	e := newEnv(t, false, obj(t, goodPool), obj(t, badPool), obj(t, legacyCM))
	e.await("the ConfigMap's pool", func() bool { return e.src.Synced() && len(e.src.Pools()) == 1 })
	e.tick()
	e.tick()
	e.await("a look at discovery", func() bool { return e.clk.Elapsed() == 2*interval && len(e.clk.Pending()) > 0 })
	if n := e.log.count("CRDs (metallb.io) are not installed"); n != 1 {
		t.Errorf("'not installed' logged %d times, want once", n)
	}
	e.disco.set(true)
	e.tick()
	e.await("the IPAddressPool", func() bool { return len(e.src.Pools()) == 2 })
	if diff := cmp.Diff([]string{"good", "old"}, e.poolNames()); diff != "" {
		t.Errorf("pools (-want +got):\n%s", diff)
	}
	if !e.src.Config().Pools["old"].MetalLB || !e.src.Config().Pools["good"].MetalLB {
		t.Errorf("pools not marked MetalLB's: %+v", e.src.Config().Pools)
	}
	e.tick()
	e.await("Run to wait", func() bool { return len(e.clk.Pending()) > 0 })
	evs := e.events()
	if len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning InvalidAddresses IPAddressPool bad left out: addresses[0]:") {
		t.Errorf("events %q; want one InvalidAddresses for the bad pool", evs)
	}
}

// While discovery fails (the API server away) the source serves the
// ConfigMap and asks again every second, not every Interval.
func TestSourceDiscoveryRetriedSoon(t *testing.T) {
	e := newEnvWith(t, &fakeDiscovery{served: true, err: apierrors.NewServiceUnavailable("down")}, obj(t, goodPool), obj(t, legacyCM))
	e.await("the ConfigMap's pool", func() bool { return e.src.Synced() && len(e.src.Pools()) == 1 })
	e.await("Run to wait on its timer", func() bool { return len(e.clk.Pending()) > 0 })
	e.disco.fail(nil)
	e.clk.Step(time.Second)
	e.await("the IPAddressPool a second later", func() bool { return len(e.src.Pools()) == 2 })
}

// A ConfigMap that is not YAML: one Warning on it, nothing from it.
func TestSourceBadConfigMap(t *testing.T) {
	e := newEnv(t, false, obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata: {config: 'address-pools: ['}"))
	e.await("synced", e.src.Synced)
	e.await("an event", func() bool { return len(e.rec.Events) > 0 })
	if evs := e.events(); len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning InvalidConfig ConfigMap config left out: config: not MetalLB's configuration") {
		t.Errorf("events %q", evs)
	}
	if len(e.src.Pools()) != 0 {
		t.Errorf("pools from a broken ConfigMap: %v", e.poolNames())
	}
}

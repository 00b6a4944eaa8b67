package kubeclient_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/vigil-lb/vigil/pkg/kubeclient"
)

// request is what the test API server was asked.
type request struct {
	method, path, query, accept, contentType string
}

// apiServer answers every request with the JSON of answer(path), or 404
// when it is nil, and records the requests.
func apiServer(t *testing.T, answer func(path string) any) (*rest.Config, func() []request) {
	t.Helper()
	var mu sync.Mutex
	var seen []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept"), r.Header.Get("Content-Type")})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		body := answer(r.URL.Path)
		if body == nil {
			w.WriteHeader(http.StatusNotFound)
			body = metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
				Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound}
		}
		if err := json.NewEncoder(w).Encode(body); err != nil {
			t.Error(err)
		}
	}))
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL, QPS: 50, Burst: 100}, func() []request {
		mu.Lock()
		defer mu.Unlock()
		return append([]request(nil), seen...)
	}
}

func newClientset(t *testing.T, cfg *rest.Config) *kubeclient.Clientset {
	t.Helper()
	cs, err := kubeclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Typed clients reach their group's paths, ask for protobuf first and
// decode what the server sends.
func TestTypedClientPaths(t *testing.T) {
	cfg, seen := apiServer(t, func(path string) any {
		switch path {
		case "/api/v1/namespaces/ns/services/web":
			return corev1.Service{TypeMeta: metav1.TypeMeta{Kind: "Service", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}}
		default:
			return nil
		}
	})
	cs := newClientset(t, cfg)
	ctx := context.Background()
	svc, err := cs.Services("ns").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || svc.Name != "web" {
		t.Fatalf("Get = %v, %v", svc, err)
	}
	_, err = cs.Leases("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "a=b"})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("List of a missing path: %v, want not found", err)
	}
	_, _ = cs.EndpointSlices("ns").List(ctx, metav1.ListOptions{})
	_, _ = cs.Nodes().Get(ctx, "node1", metav1.GetOptions{})
	_, _ = cs.ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	want := []request{
		{method: "GET", path: "/api/v1/namespaces/ns/services/web"},
		{method: "GET", path: "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", query: "labelSelector=a%3Db"},
		{method: "GET", path: "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices"},
		{method: "GET", path: "/api/v1/nodes/node1"},
		{method: "GET", path: "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"},
	}
	got := seen()
	if len(got) != len(want) {
		t.Fatalf("requests %+v, want %+v", got, want)
	}
	for i, w := range want {
		g := got[i]
		if g.method != w.method || g.path != w.path || g.query != w.query {
			t.Errorf("request %d = %s %s?%s, want %s %s?%s", i, g.method, g.path, g.query, w.method, w.path, w.query)
		}
		if !strings.HasPrefix(g.accept, "application/vnd.kubernetes.protobuf") {
			t.Errorf("request %d Accept = %q, want protobuf first", i, g.accept)
		}
	}
}

// Discovery reads /apis/<group>/<version> (the core group under /api); a
// group version not served is not found, the core group never is.
func TestServerResourcesForGroupVersion(t *testing.T) {
	cfg, seen := apiServer(t, func(path string) any {
		if path == "/apis/vigil.io/v1alpha1" {
			return metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
				GroupVersion: "vigil.io/v1alpha1", APIResources: []metav1.APIResource{{Name: "bgppeers"}}}
		}
		return nil
	})
	cs := newClientset(t, cfg)
	ctx := context.Background()
	list, err := cs.ServerResourcesForGroupVersionWithContext(ctx, "vigil.io/v1alpha1")
	if err != nil || len(list.APIResources) != 1 || list.APIResources[0].Name != "bgppeers" {
		t.Fatalf("served = %+v, %v", list, err)
	}
	if _, err := cs.ServerResourcesForGroupVersionWithContext(ctx, "metallb.io/v1beta1"); !apierrors.IsNotFound(err) {
		t.Fatalf("not served: %v, want not found", err)
	}
	if list, err := cs.ServerResourcesForGroupVersionWithContext(ctx, "v1"); err != nil || list.GroupVersion != "v1" {
		t.Fatalf("core = %+v, %v; want an empty list", list, err)
	}
	if _, err := cs.ServerResourcesForGroupVersionWithContext(ctx, ""); err == nil {
		t.Fatal("empty group version: no error")
	}
	paths := []string{}
	for _, r := range seen() {
		paths = append(paths, r.path)
	}
	if got, want := strings.Join(paths, " "), "/apis/vigil.io/v1alpha1 /apis/metallb.io/v1beta1 /api/v1"; got != want {
		t.Fatalf("paths %q, want %q", got, want)
	}
}

// The Event sink writes in the Event's namespace, as JSON.
func TestEventSink(t *testing.T) {
	cfg, seen := apiServer(t, func(string) any {
		return corev1.Event{TypeMeta: metav1.TypeMeta{Kind: "Event", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "ns"}}
	})
	cs := newClientset(t, cfg)
	sink := kubeclient.EventSink(cs.Events)
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "ns"}}
	if _, err := sink.Create(ev); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Update(ev); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Patch(ev, []byte(`{"count":2}`)); err != nil {
		t.Fatal(err)
	}
	want := []request{
		{method: "POST", path: "/api/v1/namespaces/ns/events", contentType: "application/json"},
		{method: "PUT", path: "/api/v1/namespaces/ns/events/e1", contentType: "application/json"},
		{method: "PATCH", path: "/api/v1/namespaces/ns/events/e1", contentType: "application/strategic-merge-patch+json"},
	}
	got := seen()
	if len(got) != len(want) {
		t.Fatalf("requests %+v", got)
	}
	for i, w := range want {
		if g := got[i]; g.method != w.method || g.path != w.path || g.contentType != w.contentType {
			t.Errorf("request %d = %s %s (%s), want %s %s (%s)", i, g.method, g.path, g.contentType, w.method, w.path, w.contentType)
		}
	}
}

// A QPS without a burst is refused, as client-go's clientset does.
func TestNewNeedsBurstWithQPS(t *testing.T) {
	if _, err := kubeclient.New(&rest.Config{Host: "https://127.0.0.1:1", QPS: 5}); err == nil {
		t.Fatal("QPS without Burst: no error")
	}
}

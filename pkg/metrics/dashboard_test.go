package metrics_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/pkg/metrics"
)

// dashboardFile is the Grafana dashboard vigil ships.
const dashboardFile = "../../manifests/grafana-dashboard.json"

var metricName = regexp.MustCompile(`\bvigil_[a-z0-9_]+`)

// dashboardMetrics lists every vigil_ metric the dashboard's queries
// (panel targets and template variables) name.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var names []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					names = append(names, metricName.FindAllString(s, -1)...)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	slices.Sort(names)
	return slices.Compact(names)
}

// exerciseAll records something through every method, as a running agent
// with a VIP, BGP peers, the allocator and a failed sync does.
func exerciseAll(t *testing.T, m *metrics.Metrics) {
	t.Helper()
	m.Announced(1)
	m.Announcing("default/web", true)
	m.Announcing("default/old", false)
	m.Sent(netip.MustParseAddr("198.18.0.10"), nil)
	m.Reconciled(time.Millisecond, errors.New("boom"))
	m.BGPPeers([]metrics.BGPPeer{{Peer: "198.18.0.1", State: "established", PrefixesAdvertised: 2}})
	m.Pools([]metrics.PoolUsage{{Pool: "lan", Family: "ipv4", Used: 1, Free: 9}})
	rt := m.LeaseWrites(roundTrip(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	}))
	req, err := http.NewRequest(http.MethodPut, "https://api/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kubevip-web", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
}

// TestDashboardMetricsExist: every metric the Grafana dashboard queries is
// served on /metrics (names only: a dashboard on a renamed metric shows
// "No data" without any error).
func TestDashboardMetricsExist(t *testing.T) {
	m := metrics.New()
	exerciseAll(t, m)
	_, body := get(t, serve(t, m, nil)+"/metrics")
	served := map[string]bool{}
	for k := range samples(t, body) {
		name, _, _ := strings.Cut(k, "{")
		served[name] = true
	}
	names := dashboardMetrics(t)
	if len(names) < 10 {
		t.Fatalf("the dashboard queries only %v: is %s whole?", names, dashboardFile)
	}
	for _, n := range names {
		if !served[n] {
			t.Errorf("the dashboard queries %s, which /metrics does not serve", n)
		}
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestLeaseWrites counts writes to Leases by verb and status code, and
// nothing else.
func TestLeaseWrites(t *testing.T) {
	const lease = "https://api:6443/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
	cases := []struct {
		method, url string
		code        int
		err         error
	}{
		{http.MethodPost, lease, 201, nil},
		{http.MethodPut, lease + "/kubevip-web", 200, nil},
		{http.MethodPut, lease + "/kubevip-web", 409, nil},
		{http.MethodPut, lease + "/kubevip-web", 0, errors.New("timeout")},
		{http.MethodGet, lease + "/kubevip-web", 200, nil},                                                  // a read
		{http.MethodPatch, "https://api:6443/api/v1/namespaces/default/services/web/status", 200, nil},      // not a Lease
		{http.MethodPut, "https://api:6443/apis/coordination.k8s.io/v1/leases", 404, nil},                   // no namespace: not a Lease write vigil makes
		{http.MethodDelete, "https://api:6443/apis/coordination.k8s.io/v1/namespaces/a/leases/b", 200, nil}, // delete
	}
	m := metrics.New()
	for _, c := range cases {
		rt := m.LeaseWrites(roundTrip(func(*http.Request) (*http.Response, error) {
			if c.err != nil {
				return nil, c.err
			}
			return &http.Response{StatusCode: c.code, Body: http.NoBody}, nil
		}))
		req, err := http.NewRequest(c.method, c.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := rt.RoundTrip(req)
		if !errors.Is(err, c.err) {
			t.Fatalf("%s %s: error %v, want %v", c.method, c.url, err, c.err)
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
	}
	_, body := get(t, serve(t, m, nil)+"/metrics")
	want := []string{
		`vigil_lease_writes_total{code="200",verb="delete"} 1`,
		`vigil_lease_writes_total{code="200",verb="update"} 1`,
		`vigil_lease_writes_total{code="201",verb="create"} 1`,
		`vigil_lease_writes_total{code="409",verb="update"} 1`,
		`vigil_lease_writes_total{code="error",verb="update"} 1`,
	}
	if diff := cmp.Diff(want, series(t, body, "vigil_lease_writes_total")); diff != "" {
		t.Errorf("lease write series (-want +got):\n%s", diff)
	}
}

// TestPools replaces the pool series on each report; nil clears them.
func TestPools(t *testing.T) {
	m := metrics.New()
	url := serve(t, m, nil) + "/metrics"
	m.Pools([]metrics.PoolUsage{{Pool: "a", Family: "ipv4", Used: 1, Free: 3}, {Pool: "b", Family: "ipv6", Used: 0, Free: 1 << 40}})
	m.Pools([]metrics.PoolUsage{{Pool: "a", Family: "ipv4", Used: 2, Free: 2}})
	_, body := get(t, url)
	want := []string{
		`vigil_allocator_pool_addresses{family="ipv4",pool="a",state="free"} 2`,
		`vigil_allocator_pool_addresses{family="ipv4",pool="a",state="used"} 2`,
	}
	if diff := cmp.Diff(want, series(t, body, "vigil_allocator_pool_addresses")); diff != "" {
		t.Errorf("pool series (-want +got):\n%s", diff)
	}
	m.Pools(nil)
	if _, body := get(t, url); len(series(t, body, "vigil_allocator_pool_addresses")) != 0 {
		t.Errorf("series left after Pools(nil):\n%s", body)
	}
}

// series returns the exposition's samples of one metric as sorted
// "name{labels} value" lines.
func series(t *testing.T, body, name string) []string {
	t.Helper()
	var out []string
	for k, v := range samples(t, body) {
		if k == name || strings.HasPrefix(k, name+"{") {
			out = append(out, k+" "+v)
		}
	}
	slices.Sort(out)
	return out
}

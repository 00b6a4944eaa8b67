package metrics_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/pkg/metrics"
)

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// serve runs m.Serve on a free loopback port until t ends and returns its
// base URL once it accepts connections.
func serve(t *testing.T, m *metrics.Metrics, healthy func() bool) string {
	t.Helper()
	return serveWith(t, m.Serve, healthy)
}

// serveWith runs a Serve-like function on a free loopback port until t
// ends and returns its base URL once it accepts connections.
func serveWith(t *testing.T, run func(context.Context, string, func() bool) error, healthy func() bool) string {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, addr, healthy) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	// Wait for the listener (Serve gives no signal); fail on a Serve error.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned early: %v", err)
		case <-deadline:
			t.Fatalf("Serve is not listening on %s", addr)
		case <-tick.C:
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// samples parses a text exposition into "name{labels}" -> value.
func samples(t *testing.T, body string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad sample line %q", line)
		}
		out[line[:i]] = line[i+1:]
	}
	return out
}

func TestHealthz(t *testing.T) {
	var healthy atomic.Bool
	base := serve(t, metrics.New(), healthy.Load)
	baseNil := serve(t, metrics.New(), nil)
	tests := []struct {
		name     string
		base     string
		healthy  bool
		wantCode int
		wantBody string
	}{
		{name: "not ready", base: base, healthy: false, wantCode: http.StatusServiceUnavailable, wantBody: "not ready\n"},
		{name: "ready", base: base, healthy: true, wantCode: http.StatusOK, wantBody: "ok\n"},
		{name: "not ready again", base: base, healthy: false, wantCode: http.StatusServiceUnavailable, wantBody: "not ready\n"},
		{name: "no health func", base: baseNil, wantCode: http.StatusOK, wantBody: "ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			healthy.Store(tt.healthy)
			code, body := get(t, tt.base+"/healthz")
			if code != tt.wantCode || body != tt.wantBody {
				t.Errorf("GET /healthz = %d %q, want %d %q", code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// health_check_port: /healthz alone, no /metrics.
func TestServeHealth(t *testing.T) {
	var healthy atomic.Bool
	base := serveWith(t, metrics.New().ServeHealth, healthy.Load)
	for _, tt := range []struct {
		path     string
		healthy  bool
		wantCode int
	}{
		{"/healthz", false, http.StatusServiceUnavailable},
		{"/healthz", true, http.StatusOK},
		{"/metrics", true, http.StatusNotFound},
	} {
		healthy.Store(tt.healthy)
		if code, body := get(t, base+tt.path); code != tt.wantCode {
			t.Errorf("GET %s (healthy %v) = %d %q, want %d", tt.path, tt.healthy, code, body, tt.wantCode)
		}
	}
}

func TestMetricsExposition(t *testing.T) {
	m := metrics.New()
	base := serve(t, m, nil)

	m.Announced(2)
	m.Announcing("default/web", true)
	m.Announcing("default/api", true)
	m.Announcing("default/api", false)
	m.Sent(netip.MustParseAddr("198.18.0.10"), nil)
	m.Sent(netip.MustParseAddr("::ffff:198.18.0.10"), nil) // IPv4-mapped counts as IPv4
	m.Sent(netip.MustParseAddr("fd00:1ab::10"), errors.New("no route"))
	m.Reconciled(time.Millisecond, nil)
	m.Reconciled(time.Millisecond, errors.New("boom"))

	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d:\n%s", code, body)
	}
	got := samples(t, body)
	want := map[string]string{
		`vigil_vips_announced`:                                         "2",
		`vigil_service_announced{service="default/web"}`:               "1",
		`vigil_service_announced{service="default/api"}`:               "", // deleted
		`vigil_announce_starts_total`:                                  "2",
		`vigil_announce_stops_total`:                                   "1",
		`vigil_announcements_sent_total{family="ipv4",result="ok"}`:    "2",
		`vigil_announcements_sent_total{family="ipv6",result="error"}`: "1",
		`vigil_announcements_sent_total{family="ipv6",result="ok"}`:    "",
		`vigil_reconcile_errors_total`:                                 "1",
		`vigil_reconcile_duration_seconds_count`:                       "2",
	}
	gotSome := map[string]string{}
	for k := range want {
		gotSome[k] = got[k]
	}
	if diff := cmp.Diff(want, gotSome); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("no go_goroutines: the Go collector is not registered")
	}

	m.Announced(0)
	_, body = get(t, base+"/metrics")
	if got := samples(t, body)["vigil_vips_announced"]; got != "0" {
		t.Errorf("vigil_vips_announced after Announced(0) = %q, want 0", got)
	}
}

// Serve fails when its address is taken (serve checks the nil return on
// shutdown).
func TestServeErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := metrics.New().Serve(t.Context(), ln.Addr().String(), nil); err == nil {
		t.Error("Serve on a taken address: nil error")
	}
}

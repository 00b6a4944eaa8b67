package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are one agent's collectors, on their own registry.
type Metrics struct {
	reg            *prometheus.Registry
	announced      prometheus.Gauge
	leading        *prometheus.GaugeVec
	won, lost      prometheus.Counter
	sent           *prometheus.CounterVec
	reconcileErrs  prometheus.Counter
	reconcileTimes prometheus.Histogram
}

// New registers vigil's collectors (and the Go/process ones).
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		announced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_vips_announced", Help: "VIPs bound and announced by this node."}),
		leading: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_service_leading", Help: "1 when this node announces the service."}, []string{"service"}),
		won: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_elections_won_total", Help: "Times this node started announcing a service."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_elections_lost_total", Help: "Times this node stopped announcing a service."}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_announcements_sent_total", Help: "Gratuitous ARPs (ipv4) and unsolicited NAs (ipv6) sent."}, []string{"family", "result"}),
		reconcileErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_reconcile_errors_total", Help: "Service syncs that failed and were retried."}),
		reconcileTimes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_reconcile_duration_seconds", Help: "Time to sync one service.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	m.reg.MustRegister(m.announced, m.leading, m.won, m.lost, m.sent, m.reconcileErrs, m.reconcileTimes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Reconciled records one sync.
func (m *Metrics) Reconciled(d time.Duration, err error) {
	m.reconcileTimes.Observe(d.Seconds())
	if err != nil {
		m.reconcileErrs.Inc()
	}
}

// Leading records this node starting or stopping to announce a service.
func (m *Metrics) Leading(service string, leading bool) {
	if leading {
		m.won.Inc()
		m.leading.WithLabelValues(service).Set(1)
		return
	}
	m.lost.Inc()
	m.leading.DeleteLabelValues(service)
}

// Announced sets the number of VIPs on this node.
func (m *Metrics) Announced(n int) { m.announced.Set(float64(n)) }

// Sent counts one ARP/NDP announcement (announce.Options.OnSent).
func (m *Metrics) Sent(addr netip.Addr, err error) {
	fam, res := "ipv4", "ok"
	if addr.Is6() && !addr.Is4In6() {
		fam = "ipv6"
	}
	if err != nil {
		res = "error"
	}
	m.sent.WithLabelValues(fam, res).Inc()
}

// Serve serves /metrics and /healthz on addr until ctx ends. healthy
// reports readiness for /healthz.
func (m *Metrics) Serve(ctx context.Context, addr string, healthy func() bool) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if healthy != nil && !healthy() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

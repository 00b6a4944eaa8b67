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
	announcing     *prometheus.GaugeVec
	starts, stops  prometheus.Counter
	sent           *prometheus.CounterVec
	reconcileErrs  prometheus.Counter
	reconcileTimes prometheus.Histogram
	bgp            bgpCollectors
	leaseWrites    *prometheus.CounterVec
	pools          *poolCollector
	members        membersCollectors
	electionFull   prometheus.Gauge
}

// New registers vigil's collectors (and the Go/process ones).
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		announced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_vips_announced", Help: "VIPs bound and announced by this node."}),
		announcing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_service_announced", Help: "1 when this node announces the service."}, []string{"service"}),
		starts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_announce_starts_total", Help: "Times this node started announcing a service."}),
		stops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_announce_stops_total", Help: "Times this node stopped announcing a service."}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_announcements_sent_total", Help: "Gratuitous ARPs (ipv4) and unsolicited NAs (ipv6) sent."}, []string{"family", "result"}),
		reconcileErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_reconcile_errors_total", Help: "Service syncs that failed and were retried."}),
		reconcileTimes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "vigil_reconcile_duration_seconds", Help: "Time to sync one service.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		bgp:         newBGPCollectors(),
		leaseWrites: newLeaseWrites(),
		pools:       newPoolCollector(),
		members:     newMembersCollectors(),
		electionFull: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_election_full", Help: "1 while this node holds as many per-Service Leases as its write budget renews and a further Service waits for room."}),
	}
	m.reg.MustRegister(m.members.all()...)
	m.reg.MustRegister(m.announced, m.announcing, m.starts, m.stops, m.sent, m.reconcileErrs, m.reconcileTimes,
		m.bgp.up, m.bgp.state, m.bgp.prefixes, m.bgp.updates, m.leaseWrites, m.pools.addresses, m.electionFull,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ElectionFull sets whether the per-Service elector is full.
func (m *Metrics) ElectionFull(full bool) {
	v := 0.0
	if full {
		v = 1
	}
	m.electionFull.Set(v)
}

// Reconciled records one sync.
func (m *Metrics) Reconciled(d time.Duration, err error) {
	m.reconcileTimes.Observe(d.Seconds())
	if err != nil {
		m.reconcileErrs.Inc()
	}
}

// Announcing records this node starting or stopping to announce a service
// (a Lease won is not an announcement: a shared address is announced by
// one node whatever Leases it wins).
func (m *Metrics) Announcing(service string, on bool) {
	if on {
		m.starts.Inc()
		m.announcing.WithLabelValues(service).Set(1)
		return
	}
	m.stops.Inc()
	m.announcing.DeleteLabelValues(service)
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
	mux.HandleFunc("/healthz", healthz(healthy))
	return serve(ctx, addr, mux)
}

// ServeHealth serves /healthz alone on addr until ctx ends (kube-vip's
// health_check_port).
func (m *Metrics) ServeHealth(ctx context.Context, addr string, healthy func() bool) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", healthz(healthy))
	return serve(ctx, addr, mux)
}

// healthz answers 200 when healthy (or nil), else 503.
func healthz(healthy func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if healthy != nil && !healthy() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}
}

func serve(ctx context.Context, addr string, mux *http.ServeMux) error {
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

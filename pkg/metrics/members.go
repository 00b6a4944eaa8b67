package metrics

import "github.com/prometheus/client_golang/prometheus"

// membersCollectors are the LAN liveness figures (pkg/members).
type membersCollectors struct {
	apiReachable prometheus.Gauge
	seen         prometheus.Gauge
	kept         prometheus.Gauge
	refused      prometheus.Gauge
}

func newMembersCollectors() membersCollectors {
	return membersCollectors{
		apiReachable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_api_reachable", Help: "1 while this agent reaches the API server (a quorum read of its node Lease answers), with LAN liveness on."}),
		seen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_members_seen", Help: "Other agents whose latest LAN liveness report is fresh."}),
		kept: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_services_kept", Help: "Leases this node holds past their renew deadline because every agent reports the API server away."}),
		refused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_members_refused", Help: "LAN liveness datagrams refused since start (wrong key, forged or damaged)."}),
	}
}

func (c membersCollectors) all() []prometheus.Collector {
	return []prometheus.Collector{c.apiReachable, c.seen, c.kept, c.refused}
}

// Members sets the LAN liveness figures.
func (m *Metrics) Members(apiReachable bool, seen, kept int, refused uint64) {
	v := 0.0
	if apiReachable {
		v = 1
	}
	m.members.apiReachable.Set(v)
	m.members.seen.Set(float64(seen))
	m.members.kept.Set(float64(kept))
	m.members.refused.Set(float64(refused))
}

package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// PoolUsage is one address family of one allocator pool.
type PoolUsage struct {
	Pool, Family string // family: ipv4 or ipv6
	Used, Free   uint64
}

// poolCollector holds vigil_allocator_pool_addresses and the series it set
// last.
type poolCollector struct {
	mu        sync.Mutex
	addresses *prometheus.GaugeVec
	series    map[[2]string]bool // pool, family
}

func newPoolCollector() *poolCollector {
	return &poolCollector{addresses: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vigil_allocator_pool_addresses",
		Help: "Addresses of each allocator pool by family and state (used, free); only the leading allocator reports.",
	}, []string{"pool", "family", "state"})}
}

// Pools sets the allocator pool series to pools (nil: this agent does not
// lead the allocator, so it reports none); series of pools no longer
// listed go, the others are never absent in between.
func (m *Metrics) Pools(pools []PoolUsage) {
	p := m.pools
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[[2]string]bool, len(pools))
	for _, u := range pools {
		seen[[2]string{u.Pool, u.Family}] = true
		p.addresses.WithLabelValues(u.Pool, u.Family, "used").Set(float64(u.Used))
		p.addresses.WithLabelValues(u.Pool, u.Family, "free").Set(float64(u.Free))
	}
	for k := range p.series {
		if !seen[k] {
			p.addresses.DeletePartialMatch(prometheus.Labels{"pool": k[0], "family": k[1]})
		}
	}
	p.series = seen
}

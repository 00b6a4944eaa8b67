package metrics

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// leaseVerbs are the Lease writes vigil_lease_writes_total counts, by HTTP
// method.
var leaseVerbs = map[string]string{
	http.MethodPost: "create", http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete",
}

func newLeaseWrites() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_lease_writes_total",
		Help: "Lease writes sent to the API server (election and allocator), by verb and HTTP status code (error: no answer).",
	}, []string{"verb", "code"})
}

// LeaseWrites wraps an API client's transport (rest.Config.Wrap) to count
// its writes to coordination.k8s.io Leases; other requests pass uncounted.
func (m *Metrics) LeaseWrites(rt http.RoundTripper) http.RoundTripper {
	return leaseCounter{next: rt, writes: m.leaseWrites}
}

type leaseCounter struct {
	next   http.RoundTripper
	writes *prometheus.CounterVec
}

func (c leaseCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	verb, ok := leaseVerbs[req.Method]
	if !ok || !isLeasePath(req.URL.Path) {
		return c.next.RoundTrip(req)
	}
	resp, err := c.next.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	c.writes.WithLabelValues(verb, code).Inc()
	return resp, err
}

// isLeasePath: /apis/coordination.k8s.io/<version>/namespaces/<ns>/leases[/<name>].
func isLeasePath(path string) bool {
	rest, ok := strings.CutPrefix(path, "/apis/coordination.k8s.io/")
	if !ok {
		return false
	}
	parts := strings.Split(rest, "/")
	return len(parts) >= 4 && parts[1] == "namespaces" && parts[3] == "leases"
}

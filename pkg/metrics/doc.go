// Package metrics holds vigil's Prometheus collectors and serves /metrics
// and /healthz.
package metrics

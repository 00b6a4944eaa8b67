package agent

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-lb/vigil/pkg/election"
)

// KeptWithoutAPI puts an Event on every Service this node announces
// through lease k, once the API server is back and the elector renewed a
// Lease it had kept without it (docs/design.md, "Keeping VIPs through an
// API outage"): nothing could be written meanwhile.
func (a *Agent) KeptWithoutAPI(k election.Key, held time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, st := range a.states {
		if st.lease != k || !st.announcing {
			continue
		}
		svc, err := a.model(st.key)
		if err != nil || svc == nil {
			continue
		}
		a.log.Info("service kept while the API server was away", "service", st.key, "held", held.Round(time.Millisecond))
		a.event(svc, corev1.EventTypeNormal, "VIPKeptWithoutAPI",
			"node %s kept announcing for %s while the API server was away for every agent", a.cfg.NodeName, held.Round(time.Second))
	}
}

// Announced lists the Services this node announces (namespace/name),
// for the LAN liveness reports.
func (a *Agent) Announced() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for key, st := range a.states {
		if st.announcing {
			out = append(out, key)
		}
	}
	return out
}

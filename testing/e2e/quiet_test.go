//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// Once every Service is announced and nothing changes, the agents send the
// API server their Lease renewals and nothing else: no status, Event or
// Lease read in a loop (a foreign Lease's read once looped, 393 GETs/s).
// Per-Service mode renews each Service's Lease every retry period (1 s);
// node mode (VIGIL_E2E_AGENT_ENV) renews one Lease per node every
// heartbeat interval: 1.3 s at the lab's 5/3/1 (docs/design.md).
func TestSteadyClusterIsQuiet(t *testing.T) {
	const services, window = 10, 15 * time.Second
	c := newCluster(t, 3)
	for i := range services {
		name := fmt.Sprintf("quiet%d", i)
		c.setEndpoints(name, c.allNodes()...)
		c.createService(name, []string{fmt.Sprintf("198.18.0.%d", 180+i)})
	}
	c.startAll()
	for i := range services {
		c.waitOwner(mustAddr(fmt.Sprintf("198.18.0.%d", 180+i)), "", "", 15*time.Second)
	}
	time.Sleep(3 * time.Second) // status and Events of the announcements land
	before, err := apiRequests(c.ctx, c.cs)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(window)
	after, err := apiRequests(c.ctx, c.cs)
	if err != nil {
		t.Fatal(err)
	}
	renewals := request{resource: "leases", verb: "PUT"}
	// One renewal per Service per second, and the API server's own Lease.
	limits := map[request]float64{renewals: services + 1}
	for _, r := range slices.SortedFunc(maps.Keys(after), func(a, b request) int { return strings.Compare(a.String(), b.String()) }) {
		rate := (after[r] - before[r]) / window.Seconds()
		if rate == 0 {
			continue
		}
		t.Logf("%-30s %.2f/s", r, rate)
		limit, ok := limits[r]
		if !ok {
			// The API server's own occasional requests (its OpenAPI
			// aggregation) stay well under this.
			limit = 0.5
		}
		if rate > limit {
			t.Errorf("%s: %.2f requests/s at steady state, want at most %.1f", r, rate, limit)
		}
	}
}

package cli

import (
	"log/slog"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// shutdownBudget bounds how long the process waits, once the agent has
// withdrawn its VIPs and released its Leases, for the rest (informers,
// watches, the allocator, Event delivery) to stop. With the API server
// away some of them only give up when a connection times out, and a
// process that outlives SIGTERM by that much is SIGKILLed anyway; nothing
// they do protects an address any more.
const shutdownBudget = 5 * time.Second

// waitAtMost runs wait and returns when it has, or after budget, logging
// what was left behind.
func waitAtMost(clk clock.Clock, budget time.Duration, log *slog.Logger, what string, wait func()) {
	done := make(chan struct{})
	go func() { defer close(done); wait() }()
	t := clk.NewTimer()
	defer t.Stop()
	t.Reset(clk.Now().Add(budget))
	select {
	case <-done:
	case <-t.C():
		log.Warn("exiting without waiting any longer", "for", what, "waited", budget)
	}
}

package cli

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

// A wait that ends in time is waited for; one that hangs is left behind
// once the budget is spent, and said so.
func TestWaitAtMost(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	waitAtMost(clk, time.Second, log, "quick", func() {})
	if buf.Len() != 0 {
		t.Errorf("a wait that ended was reported: %s", buf.String())
	}
	hang := make(chan struct{})
	defer close(hang)
	returned := make(chan struct{})
	go func() { defer close(returned); waitAtMost(clk, time.Second, log, "stuck", func() { <-hang }) }()
	if !clk.Await(5*time.Second, func() bool { return len(clk.Pending()) > 0 }) {
		t.Fatal("no timer armed")
	}
	clk.Step(time.Second)
	<-returned
	if !strings.Contains(buf.String(), "for=stuck") {
		t.Errorf("log %q: want the stuck wait named", buf.String())
	}
}

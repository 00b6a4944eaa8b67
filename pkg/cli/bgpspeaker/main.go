// Package bgpspeaker wires vigil's BGP speaker process (cmd/vigil-bgp):
// GoBGP's speaker (pkg/bgp) served to the agent over stdin and stdout
// (pkg/bgpproc). It is apart from pkg/cli so that the agent's binary does
// not link GoBGP.
package bgpspeaker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/bgp"
	"github.com/vigil-lb/vigil/pkg/bgpproc"
)

// Main runs the speaker process until the agent stops it and returns the
// exit code. It takes no arguments: everything comes from the agent's start
// request. SIGTERM and SIGINT stop it as the agent's stop does.
func Main(args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(os.Stderr, "vigil-bgp takes no arguments: it is started by `vigil manager` with bgp_enable=true")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	proto := os.Stdout
	os.Stdout = os.Stderr // stdout is the agent's: nothing else may write there
	if err := bgpproc.Serve(ctx, os.Stdin, proto, newSpeaker, clock.Real{}); err != nil {
		fmt.Fprintln(os.Stderr, "vigil-bgp:", err)
		return 1
	}
	return 0
}

func newSpeaker(st bgpproc.Start) (bgpproc.Speaker, error) {
	cfg := st.Speaker
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: st.LogLevel})).With("process", "vigil-bgp")
	return bgp.New(cfg)
}

package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/bgpspec"
	"github.com/vigil-lb/vigil/pkg/metrics"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

// fakePeers is a speaker whose sessions the test sets.
type fakePeers struct {
	changes chan struct{}
	mu      sync.Mutex
	peers   []bgpspec.PeerState
	err     error
}

func (f *fakePeers) Changes() <-chan struct{} { return f.changes }

func (f *fakePeers) Peers(context.Context) ([]bgpspec.PeerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peers, f.err
}

func (f *fakePeers) set(err error, peers ...bgpspec.PeerState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers, f.err = peers, err
}

// recorder is the publisher and the metrics: it records what each got.
type recorder struct {
	mu         sync.Mutex
	published  [][]nodestatus.Peer
	metrics    [][]metrics.BGPPeer
	publishErr error
}

func (r *recorder) Publish(_ context.Context, peers []nodestatus.Peer) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, peers)
	return r.publishErr == nil, r.publishErr
}

func (r *recorder) BGPPeers(peers []metrics.BGPPeer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(r.metrics, peers)
}

func (r *recorder) counts() (published, metrics int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.published), len(r.metrics)
}

// The watch reports at once, on every change signal and every 10 s
// without one (the timer re-armed from the last report); errors are
// survived; it stops with its context.
func TestPeerWatch(t *testing.T) {
	start := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	clk := clocktest.New(start)
	steps := make(chan time.Time, 1)
	clk.OnReset(func(at time.Time) { steps <- at })
	src := &fakePeers{changes: make(chan struct{}, 1)}
	rec := &recorder{}
	up := bgpspec.PeerState{Address: netip.MustParseAddr("198.18.0.254"), ASN: 65001, State: "established", Since: start, PrefixesSent: 2}
	down := bgpspec.PeerState{Address: netip.MustParseAddr("fd00:1ab::fe"), ASN: 65002, State: "active", LastError: "hold timer expired"}
	src.set(nil, up, down)
	var sessionsUp, upChanges atomic.Int32
	w := &peerWatch{src: src, pub: rec, met: rec, clock: clk, every: 10 * time.Second, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		up: &sessionsUp, upChanged: func() { upChanges.Add(1) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx) }()

	tests := []struct {
		name          string
		act           func()
		wantRearm     time.Time
		wantPublished int
		wantMetrics   int
	}{
		{"at once", func() {}, start.Add(10 * time.Second), 1, 1},
		{"on a change", func() { clk.Step(4 * time.Second); src.changes <- struct{}{} }, start.Add(14 * time.Second), 2, 2},
		{"10 s after the last report", func() { clk.Step(10 * time.Second) }, start.Add(24 * time.Second), 3, 3},
		{"sessions unreadable: nothing reported", func() { src.set(errors.New("stopped")); src.changes <- struct{}{} }, start.Add(24 * time.Second), 3, 3},
		{"publish fails: metrics still set", func() { src.set(nil, up); rec.publishErr = errors.New("forbidden"); clk.Step(10 * time.Second) }, start.Add(34 * time.Second), 4, 4},
		{"publish works again", func() { rec.publishErr = nil; src.changes <- struct{}{} }, start.Add(34 * time.Second), 5, 5},
	}
	for _, tt := range tests {
		tt.act()
		select {
		case at := <-steps:
			if !at.Equal(tt.wantRearm) {
				t.Errorf("%s: timer re-armed for %v, want %v", tt.name, at, tt.wantRearm)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the watch did not finish a report", tt.name)
		}
		if p, m := rec.counts(); p != tt.wantPublished || m != tt.wantMetrics {
			t.Errorf("%s: %d publications and %d metric updates, want %d and %d", tt.name, p, m, tt.wantPublished, tt.wantMetrics)
		}
	}
	cancel()
	<-done
	if got := sessionsUp.Load(); got != 1 {
		t.Errorf("established sessions recorded: %d, want 1", got)
	}
	if got := upChanges.Load(); got != 1 {
		t.Errorf("upChanged called %d times, want once (0 -> 1 established; it stayed 1)", got)
	}

	wantPub := []nodestatus.Peer{
		{Peer: "198.18.0.254", ASN: 65001, State: "established", Since: start, Prefixes: 2},
		{Peer: "fd00:1ab::fe", ASN: 65002, State: "active", LastError: "hold timer expired"},
	}
	wantMet := []metrics.BGPPeer{
		{Peer: "198.18.0.254", State: "established", PrefixesAdvertised: 2},
		{Peer: "fd00:1ab::fe", State: "active"},
	}
	if diff := cmp.Diff(wantPub, rec.published[0]); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantMet, rec.metrics[0]); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

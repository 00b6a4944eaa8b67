package bgpproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/bgpspec"
)

// fakeSpeaker records what it is asked; Run blocks until its context ends.
type fakeSpeaker struct {
	start   Start
	changes chan struct{}
	failOn  netip.Prefix // Announce of this prefix fails

	mu       sync.Mutex
	routerID netip.Addr
	peers    []bgpspec.Peer
	routes   map[netip.Prefix]bgpspec.Route
	running  bool
	stopped  bool
}

func newFakeSpeaker(st Start) *fakeSpeaker {
	return &fakeSpeaker{start: st, changes: make(chan struct{}, 1), routerID: st.Speaker.RouterID,
		routes: map[netip.Prefix]bgpspec.Route{}}
}

func (f *fakeSpeaker) Run(ctx context.Context) error {
	f.mu.Lock()
	f.running = true
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	f.stopped = true
	clear(f.routes) // the real speaker withdraws everything
	f.mu.Unlock()
	return nil
}

func (f *fakeSpeaker) SetRouterID(id netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routerID = id
	return nil
}

func (f *fakeSpeaker) SetPeers(_ context.Context, peers []bgpspec.Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = peers
	return nil
}

func (f *fakeSpeaker) Announce(_ context.Context, r bgpspec.Route) error {
	if r.Prefix == f.failOn {
		return errors.New("GoBGP says no")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[r.Prefix] = r
	return nil
}

func (f *fakeSpeaker) Withdraw(_ context.Context, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.routes, p)
	return nil
}

func (f *fakeSpeaker) Peers(context.Context) ([]bgpspec.PeerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []bgpspec.PeerState
	for _, p := range f.peers {
		out = append(out, bgpspec.PeerState{Address: p.Address, ASN: p.ASN, State: "established"})
	}
	return out, nil
}

func (f *fakeSpeaker) Changes() <-chan struct{} { return f.changes }

// state is what the fake was given, for comparison.
type state struct {
	RouterID netip.Addr
	Peers    []bgpspec.Peer
	Routes   []netip.Prefix
	Stopped  bool
}

func (f *fakeSpeaker) state() state {
	f.mu.Lock()
	defer f.mu.Unlock()
	rs := slices.SortedFunc(maps.Keys(f.routes), func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return state{RouterID: f.routerID, Peers: f.peers, Routes: rs, Stopped: f.stopped}
}

// procs starts fake speaker processes: Serve over in-memory pipes.
type procs struct {
	t       *testing.T
	failOn  netip.Prefix
	started chan *proc
}

// proc is one fake process.
type proc struct {
	sp     *fakeSpeaker
	inR    *io.PipeReader
	inW    *io.PipeWriter
	outR   *io.PipeReader
	outW   *io.PipeWriter
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Serve's result, set before done is closed
}

func (p *proc) Read(b []byte) (int, error)  { return p.outR.Read(b) }
func (p *proc) Write(b []byte) (int, error) { return p.inW.Write(b) }
func (p *proc) Close() error                { return p.inW.Close() }
func (p *proc) Wait() error                 { <-p.done; return p.err }
func (p *proc) Kill()                       { p.cancel(); p.inR.CloseWithError(errors.New("killed")) }

func newProcs(t *testing.T) *procs { return &procs{t: t, started: make(chan *proc, 10)} }

func (ps *procs) start(context.Context) (Conn, error) {
	p := &proc{done: make(chan struct{})}
	p.inR, p.inW = io.Pipe()
	p.outR, p.outW = io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	spoke := make(chan *fakeSpeaker, 1)
	go func() {
		defer close(p.done)
		p.err = Serve(ctx, p.inR, p.outW, func(st Start) (Speaker, error) {
			sp := newFakeSpeaker(st)
			sp.failOn = ps.failOn
			spoke <- sp
			return sp, nil
		}, clocktest.New(time.Unix(0, 0))) // never moves: no silence
		p.outW.Close() // the process's output ends with it
	}()
	go func() {
		select {
		case p.sp = <-spoke:
		case <-p.done:
		}
		ps.started <- p
	}()
	return p, nil
}

func (ps *procs) next() *proc {
	ps.t.Helper()
	select {
	case p := <-ps.started:
		return p
	case <-time.After(10 * time.Second):
		ps.t.Fatal("no speaker process started")
		return nil
	}
}

var cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

var (
	id1    = netip.MustParseAddr("198.18.0.1")
	id2    = netip.MustParseAddr("198.18.0.2")
	peer   = bgpspec.Peer{Address: netip.MustParseAddr("198.18.1.1"), ASN: 64512}
	route1 = bgpspec.Route{Prefix: netip.MustParsePrefix("198.18.100.1/32")}
	route2 = bgpspec.Route{Prefix: netip.MustParsePrefix("198.18.100.2/32")}
	route3 = bgpspec.Route{Prefix: netip.MustParsePrefix("198.18.100.3/32")}
)

func newRemote(t *testing.T, ps *procs) *Remote {
	t.Helper()
	r, err := New(Options{Start: ps.start, Speaker: bgpspec.Config{ASN: 64513, RouterID: id1},
		Log: slog.New(slog.DiscardHandler), Clock: clock.Real{}, Restart: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runRemote runs r until the test ends and returns Run's result channel.
func runRemote(t *testing.T, r *Remote) (context.CancelFunc, <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- r.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-finished })
	return cancel, done
}

// live waits until r has handed its state to a process.
func live(t *testing.T, r *Remote) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		l := r.live
		r.mu.Unlock()
		if l != nil {
			return
		}
		select {
		case <-r.Changes():
		case <-deadline:
			t.Fatal("the speaker process never got the state")
		}
	}
}

func TestNewProcessGetsTheWholeDesiredState(t *testing.T) {
	ps := newProcs(t)
	r := newRemote(t, ps)
	ctx := context.Background()
	// Calls before Run are recorded.
	for _, err := range []error{
		r.SetRouterID(id2),
		r.SetPeers(ctx, []bgpspec.Peer{peer}),
		r.Announce(ctx, route1),
		r.Announce(ctx, route2),
		r.Withdraw(ctx, route1.Prefix),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	runRemote(t, r)
	p := ps.next()
	live(t, r)
	want := state{RouterID: id2, Peers: []bgpspec.Peer{peer}, Routes: []netip.Prefix{route2.Prefix}}
	if diff := cmp.Diff(want, p.sp.state(), cmpNetip); diff != "" {
		t.Errorf("the process's speaker (-want +got):\n%s", diff)
	}
	if p.sp.start.Speaker.ASN != 64513 || p.sp.start.Silence != 5*time.Second {
		t.Errorf("start = %+v, want ASN 64513 and the default silence 5s", p.sp.start)
	}
}

func TestCallsReachTheRunningProcess(t *testing.T) {
	ps := newProcs(t)
	ps.failOn = route3.Prefix
	r := newRemote(t, ps)
	runRemote(t, r)
	p := ps.next()
	live(t, r)
	ctx := context.Background()
	if err := r.Announce(ctx, route1); err != nil {
		t.Fatal(err)
	}
	if err := r.SetPeers(ctx, []bgpspec.Peer{peer}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetRouterID(id2); err != nil {
		t.Fatal(err)
	}
	want := state{RouterID: id2, Peers: []bgpspec.Peer{peer}, Routes: []netip.Prefix{route1.Prefix}}
	if diff := cmp.Diff(want, p.sp.state(), cmpNetip); diff != "" {
		t.Errorf("after the calls returned (-want +got):\n%s", diff)
	}
	if err := r.Announce(ctx, route3); err == nil || !strings.Contains(err.Error(), "GoBGP says no") {
		t.Errorf("Announce refused by the speaker = %v, want its error", err)
	}
	got, err := r.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].State != "established" {
		t.Errorf("Peers = %+v, want the process's one established session", got)
	}
}

func TestEndedProcessIsStartedAgainWithTheState(t *testing.T) {
	ps := newProcs(t)
	r := newRemote(t, ps)
	runRemote(t, r)
	first := ps.next()
	live(t, r)
	ctx := context.Background()
	if err := r.Announce(ctx, route1); err != nil {
		t.Fatal(err)
	}
	first.Kill()
	second := ps.next()
	if second == first {
		t.Fatal("the same process twice")
	}
	live(t, r)
	if err := r.Announce(ctx, route2); err != nil {
		t.Fatal(err)
	}
	want := state{RouterID: id1, Routes: []netip.Prefix{route1.Prefix, route2.Prefix}}
	if diff := cmp.Diff(want, second.sp.state(), cmpNetip); diff != "" {
		t.Errorf("the second process's speaker (-want +got):\n%s", diff)
	}
}

func TestStopWithdrawsAndEndsTheProcess(t *testing.T) {
	ps := newProcs(t)
	r := newRemote(t, ps)
	cancel, done := runRemote(t, r)
	p := ps.next()
	live(t, r)
	if err := r.Announce(context.Background(), route1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil after a clean stop", err)
	}
	if err := p.Wait(); err != nil {
		t.Errorf("Serve = %v, want nil when the agent asked it to stop", err)
	}
	if diff := cmp.Diff(state{RouterID: id1, Stopped: true}, p.sp.state(), cmpNetip); diff != "" {
		t.Errorf("the stopped speaker (-want +got):\n%s", diff)
	}
	if err := r.Announce(context.Background(), route2); !errors.Is(err, bgpspec.ErrStopped) {
		t.Errorf("Announce after Run = %v, want ErrStopped", err)
	}
}

func TestPeersAreIdleWithoutAProcess(t *testing.T) {
	r := newRemote(t, newProcs(t))
	if err := r.SetPeers(context.Background(), []bgpspec.Peer{peer}); err != nil {
		t.Fatal(err)
	}
	got, err := r.Peers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []bgpspec.PeerState{{Address: peer.Address, ASN: peer.ASN, State: "idle"}}
	if diff := cmp.Diff(want, got, cmpNetip); diff != "" {
		t.Errorf("Peers before Run (-want +got):\n%s", diff)
	}
}

func TestBadCallsAreRefusedBeforeTheProcess(t *testing.T) {
	r := newRemote(t, newProcs(t))
	ctx := context.Background()
	for name, err := range map[string]error{
		"IPv6 router id":  r.SetRouterID(netip.MustParseAddr("fd00:1ab::1")),
		"peer ASN 0":      r.SetPeers(ctx, []bgpspec.Peer{{Address: peer.Address}}),
		"peer twice":      r.SetPeers(ctx, []bgpspec.Peer{peer, peer}),
		"route host bits": r.Announce(ctx, bgpspec.Route{Prefix: netip.MustParsePrefix("198.18.100.1/24")}),
		"route no prefix": r.Announce(ctx, bgpspec.Route{}),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// serveDirect runs Serve on pipes with a fake clock and returns the
// agent's ends.
func serveDirect(t *testing.T, silence time.Duration) (*clocktest.Fake, <-chan time.Time, *lineWriter, *io.PipeWriter, <-chan *fakeSpeaker, <-chan error) {
	clk := clocktest.New(time.Unix(0, 0))
	armed := make(chan time.Time, 10)
	clk.OnReset(func(at time.Time) { armed <- at }) // Serve's only timer: the silence
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	spoke := make(chan *fakeSpeaker, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(context.Background(), inR, outW, func(st Start) (Speaker, error) {
			sp := newFakeSpeaker(st)
			spoke <- sp
			return sp, nil
		}, clk)
		outW.Close()
	}()
	w := newLineWriter(inW)
	if err := w.write(request{ID: 1, Op: opStart, Start: &Start{Speaker: bgpspec.Config{ASN: 1, RouterID: id1}, Silence: silence}}); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, outR) // the replies
	return clk, armed, w, inW, spoke, done
}

func TestServeStopsWhenTheAgentIsSilent(t *testing.T) {
	clk, armed, w, _, spoke, done := serveDirect(t, 5*time.Second)
	sp := <-spoke
	for range 3 { // pings keep it up
		<-armed
		clk.Step(4 * time.Second)
		if err := w.write(request{Op: opPing}); err != nil {
			t.Fatal(err)
		}
	}
	if at := <-armed; !at.Equal(clk.Now().Add(5 * time.Second)) {
		t.Fatalf("silence re-armed for %v, want 5s after the last ping", at.Sub(clk.Now()))
	}
	select {
	case err := <-done:
		t.Fatalf("Serve ended while pinged: %v", err)
	default:
	}
	clk.Step(5 * time.Second)
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "nothing heard from the agent for 5s") {
		t.Errorf("Serve = %v, want the silence named", err)
	}
	if !sp.state().Stopped {
		t.Error("the speaker was not stopped")
	}
}

func TestServeStopsWhenTheAgentGoes(t *testing.T) {
	_, _, _, in, spoke, done := serveDirect(t, time.Hour)
	sp := <-spoke
	in.Close() // the agent exited
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "requests ended") {
		t.Errorf("Serve = %v, want the end of the requests named", err)
	}
	if !sp.state().Stopped {
		t.Error("the speaker was not stopped")
	}
}

// TestCommand runs this test binary as a real speaker process (see
// TestMain) through Command: pipes, start, calls and a clean stop.
func TestCommand(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(helperEnv, "1")
	r, err := New(Options{Start: Command(exe), Speaker: bgpspec.Config{ASN: 64513, RouterID: id1},
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := runRemote(t, r)
	live(t, r)
	ctx := context.Background()
	if err := r.SetPeers(ctx, []bgpspec.Peer{peer}); err != nil {
		t.Fatal(err)
	}
	got, err := r.Peers(ctx)
	if err != nil || len(got) != 1 || got[0].State != "established" {
		t.Errorf("Peers from the process = %+v, %v; want one established session", got, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want the process to exit cleanly", err)
	}
}

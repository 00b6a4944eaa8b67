package bgpproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/bgpspec"
)

// Conn is one started speaker process: Write reaches its input, Read its
// output.
type Conn interface {
	io.Reader
	io.Writer
	// Close closes the process's input.
	Close() error
	// Wait returns when the process has exited, with how it ended.
	Wait() error
	// Kill ends the process at once.
	Kill()
}

// Starter starts a speaker process.
type Starter func(ctx context.Context) (Conn, error)

// Options configure a Remote.
type Options struct {
	// Start starts the speaker process (Command in production).
	Start Starter
	// Speaker is the speaker's identity; SetRouterID changes its router id.
	Speaker bgpspec.Config
	// LogLevel is the level of the process's logs.
	LogLevel slog.Level
	Log      *slog.Logger
	Clock    clock.Clock
	// Ping is how often the agent tells the process it is alive (default
	// 1 s); Silence is how long the process waits without hearing from it
	// before it withdraws everything and stops (default 5 s).
	Ping, Silence time.Duration
	// Restart is the wait before a process that ended is started again
	// (default 1 s).
	Restart time.Duration
	// StopWait bounds the wait for the process to withdraw its routes and
	// exit when Run ends (default 10 s); then it is killed.
	StopWait time.Duration
	// CallTimeout bounds a call that has no context of its own
	// (SetRouterID; default 10 s).
	CallTimeout time.Duration
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&o.Ping, time.Second}, {&o.Silence, 5 * time.Second}, {&o.Restart, time.Second},
		{&o.StopWait, 10 * time.Second}, {&o.CallTimeout, 10 * time.Second}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
}

// Remote is the agent's handle on the speaker process: the desired state,
// applied to the process while one runs.
type Remote struct {
	o       Options
	changes chan struct{}

	// op serializes every change of the desired state with its delivery,
	// so the process sees changes in order; taken before mu.
	op sync.Mutex

	mu       sync.Mutex // guards what follows
	phase    phase
	routerID netip.Addr
	peers    []bgpspec.Peer
	routes   map[netip.Prefix]bgpspec.Route
	live     *link // the process that has the desired state; nil when none
}

type phase int

const (
	idle phase = iota
	running
	stopped
)

// New validates the speaker's identity and returns a Remote; nothing runs
// until Run.
func New(o Options) (*Remote, error) {
	if err := o.Speaker.Validate(); err != nil {
		return nil, err
	}
	if o.Start == nil {
		return nil, errors.New("bgpproc: no way to start the speaker process")
	}
	o.defaults()
	o.Log = o.Log.With("component", "bgp")
	return &Remote{o: o, changes: make(chan struct{}, 1), routerID: o.Speaker.RouterID,
		routes: map[netip.Prefix]bgpspec.Route{}}, nil
}

// Changes is signalled (never blocking, buffer one) when a session may have
// changed state, and when the process started or ended; read Peers then.
func (r *Remote) Changes() <-chan struct{} { return r.changes }

func (r *Remote) notify() {
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

// SetRouterID sets the speaker's router id (IPv4); a running speaker
// restarts its sessions with it.
func (r *Remote) SetRouterID(id netip.Addr) error {
	if !id.Is4() {
		return fmt.Errorf("bgp: router id %s is not an IPv4 address", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.o.CallTimeout)
	defer cancel()
	return r.change(ctx, func() { r.routerID = id }, request{Op: opRouterID, RouterID: id})
}

// SetPeers makes the configured sessions match peers.
func (r *Remote) SetPeers(ctx context.Context, peers []bgpspec.Peer) error {
	seen := make(map[netip.Addr]bool, len(peers))
	for _, p := range peers {
		if err := p.Validate(); err != nil {
			return err
		}
		if seen[p.Address.Unmap()] {
			return fmt.Errorf("bgp: peer %s listed twice", p.Address)
		}
		seen[p.Address.Unmap()] = true
	}
	peers = slices.Clone(peers)
	return r.change(ctx, func() { r.peers = peers }, request{Op: opPeers, Peers: peers})
}

// Announce makes route rt announced, replacing the attributes of an
// announced route with the same prefix.
func (r *Remote) Announce(ctx context.Context, rt bgpspec.Route) error {
	if err := rt.Validate(); err != nil {
		return err
	}
	rt.Communities = slices.Clone(rt.Communities)
	rt.LargeCommunities = slices.Clone(rt.LargeCommunities)
	rt.Peers = slices.Clone(rt.Peers)
	return r.change(ctx, func() { r.routes[rt.Prefix] = rt }, request{Op: opAnnounce, Route: &rt})
}

// Withdraw makes p not announced; an unknown prefix does nothing.
func (r *Remote) Withdraw(ctx context.Context, p netip.Prefix) error {
	return r.change(ctx, func() { delete(r.routes, p) }, request{Op: opWithdraw, Prefix: p})
}

// change records a change of the desired state and, while a process runs,
// applies it there: the process's error is returned; a process that ends
// meanwhile gets the change with the whole state when it starts again.
func (r *Remote) change(ctx context.Context, record func(), req request) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bgp: %s: %w", req.Op, err)
	}
	r.op.Lock()
	defer r.op.Unlock()
	r.mu.Lock()
	if r.phase == stopped {
		r.mu.Unlock()
		return bgpspec.ErrStopped
	}
	record()
	l := r.live
	r.mu.Unlock()
	if l == nil {
		return nil
	}
	_, err := l.call(ctx, req)
	if errors.Is(err, errGone) {
		return nil
	}
	return err
}

// Routes returns the desired routes, sorted by prefix.
func (r *Remote) Routes() []bgpspec.Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := slices.Collect(maps.Values(r.routes))
	slices.SortFunc(rs, func(a, b bgpspec.Route) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return rs
}

// Peers returns the state of every desired peer, sorted by address, from
// the process; while none runs, every session is "idle".
func (r *Remote) Peers(ctx context.Context) ([]bgpspec.PeerState, error) {
	r.mu.Lock()
	l := r.live
	idle := idlePeers(r.peers)
	r.mu.Unlock()
	if l == nil {
		return idle, nil
	}
	rep, err := l.call(ctx, request{Op: opState})
	if errors.Is(err, errGone) {
		return idle, nil
	}
	return rep.Peers, err
}

func idlePeers(peers []bgpspec.Peer) []bgpspec.PeerState {
	out := make([]bgpspec.PeerState, 0, len(peers))
	for _, p := range peers {
		out = append(out, bgpspec.PeerState{Address: p.Address.Unmap(), ASN: p.ASN, State: "idle"})
	}
	slices.SortFunc(out, func(a, b bgpspec.PeerState) int { return a.Address.Compare(b.Address) })
	return out
}

// Run keeps a speaker process running with the desired state until ctx
// ends; then the process withdraws every route and stops. It returns nil
// after a clean stop.
func (r *Remote) Run(ctx context.Context) error {
	if err := r.enter(); err != nil {
		return err
	}
	defer r.leave()
	wait := r.o.Clock.NewTimer()
	defer wait.Stop()
	for {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return err
		}
		r.o.Log.Error("BGP speaker process ended; starting it again", "err", err, "in", r.o.Restart)
		wait.Reset(r.o.Clock.Now().Add(r.o.Restart))
		select {
		case <-wait.C():
		case <-ctx.Done():
			return nil
		}
	}
}

func (r *Remote) enter() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.phase != idle {
		return errors.New("bgp: Run called twice")
	}
	r.phase = running
	return nil
}

func (r *Remote) leave() {
	r.mu.Lock()
	r.phase = stopped
	r.mu.Unlock()
	r.notify()
}

// session runs one process: started, given the desired state, pinged,
// until it ends or ctx ends (then it is stopped).
func (r *Remote) session(ctx context.Context) error {
	conn, err := r.o.Start(ctx)
	if err != nil {
		return fmt.Errorf("bgp: start the speaker process: %w", err)
	}
	l := newLink(conn, r.notify)
	go l.read()
	if err := r.attach(ctx, l); err != nil {
		conn.Kill()
		<-l.gone
		return errors.Join(err, conn.Wait())
	}
	defer r.notify()
	ping := r.o.Clock.NewTimer()
	defer ping.Stop()
	for {
		ping.Reset(r.o.Clock.Now().Add(r.o.Ping))
		select {
		case <-ctx.Done():
			r.detach()
			return r.stop(l)
		case <-l.gone:
			r.detach()
			return fmt.Errorf("bgp: speaker process ended: %w", conn.Wait())
		case <-ping.C():
			if err := l.send(request{Op: opPing}); err != nil {
				r.o.Log.Warn("pinging the BGP speaker process", "err", err)
			}
		}
	}
}

// attach starts the process's speaker with the whole desired state, then
// makes it the live one. op is held throughout, so no change slips between
// the copy and the process.
func (r *Remote) attach(ctx context.Context, l *link) error {
	r.op.Lock()
	defer r.op.Unlock()
	r.mu.Lock()
	cfg := r.o.Speaker
	cfg.RouterID = r.routerID
	peers := slices.Clone(r.peers)
	routes := slices.Collect(maps.Values(r.routes))
	r.mu.Unlock()
	st := &Start{Speaker: cfg, Silence: r.o.Silence, LogLevel: r.o.LogLevel}
	if _, err := l.call(ctx, request{Op: opStart, Start: st}); err != nil {
		return fmt.Errorf("bgp: start the speaker: %w", err)
	}
	if _, err := l.call(ctx, request{Op: opPeers, Peers: peers}); err != nil {
		r.o.Log.Warn("applying peers in the new speaker process", "err", err)
	}
	for _, rt := range routes {
		if _, err := l.call(ctx, request{Op: opAnnounce, Route: &rt}); err != nil {
			r.o.Log.Warn("applying a route in the new speaker process", "prefix", rt.Prefix, "err", err)
		}
	}
	r.mu.Lock()
	r.live = l
	r.mu.Unlock()
	r.notify()
	r.o.Log.Info("BGP speaker process running", "peers", len(peers), "routes", len(routes))
	return nil
}

// detach makes calls only record from now on.
func (r *Remote) detach() {
	r.mu.Lock()
	r.live = nil
	r.mu.Unlock()
}

// stop asks the process to withdraw and exit, and kills it after
// StopWait.
func (r *Remote) stop(l *link) error {
	if err := l.send(request{Op: opStop}); err != nil {
		r.o.Log.Warn("asking the BGP speaker process to stop", "err", err)
	}
	deadline := r.o.Clock.NewTimer()
	defer deadline.Stop()
	deadline.Reset(r.o.Clock.Now().Add(r.o.StopWait))
	select {
	case <-l.gone:
	case <-deadline.C():
		r.o.Log.Error("BGP speaker process did not stop; killing it", "waited", r.o.StopWait)
		l.conn.Kill()
		<-l.gone
	}
	if err := l.conn.Wait(); err != nil {
		return fmt.Errorf("bgp: speaker process: %w", err)
	}
	return nil
}

// errGone: the process ended before it answered.
var errGone = errors.New("bgp: speaker process ended")

// link is the conversation with one process.
type link struct {
	conn     Conn
	w        *lineWriter
	onChange func()
	gone     chan struct{} // closed when the process's output has ended

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan reply
}

func newLink(conn Conn, onChange func()) *link {
	return &link{conn: conn, w: newLineWriter(conn), onChange: onChange,
		gone: make(chan struct{}), pending: map[uint64]chan reply{}}
}

// read delivers the process's replies until its output ends.
func (l *link) read() {
	defer close(l.gone)
	dec := json.NewDecoder(l.conn)
	for {
		var rep reply
		if err := dec.Decode(&rep); err != nil {
			return
		}
		if rep.ID == 0 {
			if rep.Changed {
				l.onChange()
			}
			continue
		}
		l.mu.Lock()
		ch := l.pending[rep.ID]
		delete(l.pending, rep.ID)
		l.mu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
}

// send writes a request that has no answer.
func (l *link) send(req request) error { return l.w.write(req) }

// call writes a request and waits for its answer; errGone if the process
// ends first.
func (l *link) call(ctx context.Context, req request) (reply, error) {
	ch := make(chan reply, 1)
	l.mu.Lock()
	l.next++
	req.ID = l.next
	l.pending[req.ID] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pending, req.ID)
		l.mu.Unlock()
	}()
	if err := l.w.write(req); err != nil {
		select {
		case <-l.gone:
			return reply{}, errGone
		default:
			return reply{}, fmt.Errorf("bgp: write to the speaker process: %w", err)
		}
	}
	select {
	case rep := <-ch:
		if rep.Err != "" {
			return rep, errors.New(rep.Err)
		}
		return rep, nil
	case <-l.gone:
		return reply{}, errGone
	case <-ctx.Done():
		return reply{}, fmt.Errorf("bgp: %s: %w", req.Op, ctx.Err())
	}
}

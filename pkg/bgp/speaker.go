package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/vigil-lb/vigil/internal/clock"
)

// Speaker is one BGP speaker: a desired set of peers and routes, applied to
// an embedded GoBGP server while Run runs.
type Speaker struct {
	cfg     Config
	log     *slog.Logger
	clk     clock.Clock
	changes chan struct{}

	// op serializes everything that talks to GoBGP; it is taken before mu.
	op  sync.Mutex
	srv *server.BgpServer // non-nil while running; guarded by op
	// policyAssigned: the export policy is assigned in srv; guarded by op.
	policyAssigned bool

	mu      sync.Mutex // guards what follows
	phase   phase
	peers   map[netip.Addr]Peer       // desired
	applied map[netip.Addr]Peer       // configured in GoBGP
	routes  map[netip.Prefix]Route    // desired
	sent    map[netip.Prefix]Route    // given to GoBGP
	status  map[netip.Addr]peerStatus // from GoBGP's peer events
	// bfdArmed: peers whose BFD is given to GoBGP (see bfd.go).
	bfdArmed map[netip.Addr]bool
	// bfdKick is signalled when a session with BFD to arm comes up.
	bfdKick chan struct{}
	// routerID is the one GoBGP runs (or will run) with; restartKick is
	// signalled when it changes while running.
	routerID    netip.Addr
	restartKick chan struct{}
	// dropped: peers whose established session went down, to redial;
	// redialed: when each was last redialled; redials counts them; the
	// maintenance loop is kicked through redialKick (see redial.go).
	dropped    map[netip.Addr]bool
	redialed   map[netip.Addr]time.Time
	redials    int
	redialKick chan struct{}
}

type phase int

const (
	idle phase = iota
	running
	stopped
)

type peerStatus struct {
	state     string
	since     time.Time
	lastError string
}

// New validates cfg and returns a Speaker; nothing runs until Run.
func New(cfg Config) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	return &Speaker{
		cfg:     cfg,
		log:     cfg.Log.With("component", "bgp"),
		clk:     cfg.Clock,
		changes: make(chan struct{}, 1),
		peers:   map[netip.Addr]Peer{},
		applied: map[netip.Addr]Peer{},
		routes:  map[netip.Prefix]Route{},
		sent:    map[netip.Prefix]Route{},
		status:  map[netip.Addr]peerStatus{},

		bfdArmed: map[netip.Addr]bool{},
		bfdKick:  make(chan struct{}, 1),

		routerID:    cfg.RouterID,
		restartKick: make(chan struct{}, 1),

		dropped:    map[netip.Addr]bool{},
		redialed:   map[netip.Addr]time.Time{},
		redialKick: make(chan struct{}, 1),
	}, nil
}

// Changes is signalled (never blocking, buffer one) when a session changes
// state; read Peers then.
func (s *Speaker) Changes() <-chan struct{} { return s.changes }

func (s *Speaker) notify() { kick(s.changes) }

// kick signals c without blocking.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run starts GoBGP, applies the desired peers and routes and keeps them
// applied until ctx ends; then it withdraws every route, waits (bounded)
// until the withdrawals are sent, closes the sessions with a Cease and
// stops GoBGP. It returns nil after a clean stop. A new router id
// (SetRouterID) restarts GoBGP the same way in between.
func (s *Speaker) Run(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	for {
		restart, err := s.serve(ctx)
		if err != nil || !restart {
			return err
		}
	}
}

// serve runs one GoBGP server until ctx ends or the router id changes
// (restart is true then).
func (s *Speaker) serve(ctx context.Context) (restart bool, err error) {
	srv, stopWatch, err := s.start(ctx)
	if err != nil {
		return false, err
	}
	s.op.Lock()
	s.srv = srv
	err = s.syncAll(ctx)
	s.op.Unlock()
	if err != nil {
		s.log.Warn("applying peers and routes at start", "err", err)
	}
	restart = s.maintain(ctx)
	s.shutdown(srv)
	stopWatch()
	s.forgetServer()
	return restart, nil
}

// SetRouterID sets the speaker's router id (IPv4). GoBGP has one per
// server, so a running speaker restarts with it: every session closes
// (routes withdrawn first) and opens again. The same id does nothing.
func (s *Speaker) SetRouterID(id netip.Addr) error {
	if !id.Is4() {
		return fmt.Errorf("bgp: router id %s is not an IPv4 address", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.routerID == id {
		return nil
	}
	s.routerID = id
	if s.phase == running {
		kick(s.restartKick)
	}
	return nil
}

// forgetServer clears what lived in the stopped server.
func (s *Speaker) forgetServer() {
	s.op.Lock()
	s.policyAssigned = false
	s.op.Unlock()
	s.mu.Lock()
	clear(s.applied)
	clear(s.sent)
	clear(s.bfdArmed)
	clear(s.dropped)
	s.mu.Unlock()
}

func (s *Speaker) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != idle {
		return errors.New("bgp: Run called twice")
	}
	s.phase = running
	return nil
}

func (s *Speaker) leave() {
	s.mu.Lock()
	s.phase = stopped
	clear(s.applied)
	clear(s.sent)
	s.mu.Unlock()
	s.notify()
}

// start starts GoBGP and watches its peer events.
func (s *Speaker) start(ctx context.Context) (*server.BgpServer, context.CancelFunc, error) {
	srv := server.NewBgpServer(server.LoggerOption(gobgpLogger(s.log), nil))
	go srv.Serve() // ends in srv.Stop, which waits for it
	cfg := s.cfg
	s.mu.Lock()
	cfg.RouterID = s.routerID
	s.mu.Unlock()
	if err := startBgp(ctx, srv, cfg); err != nil {
		srv.Stop()
		return nil, nil, fmt.Errorf("bgp: start: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	cb := server.WatchEventMessageCallbacks{OnPeerUpdate: s.onPeerEvent}
	if err := srv.WatchEvent(wctx, cb, server.WatchPeer()); err != nil {
		cancel()
		srv.Stop()
		return nil, nil, fmt.Errorf("bgp: watch peer events: %w", err)
	}
	s.log.Info("BGP speaker started", "asn", cfg.ASN, "routerID", cfg.RouterID, "listenPort", globalConfig(cfg).Global.ListenPort)
	return srv, cancel, nil
}

// startMu serializes GoBGP's StartBgp, which writes package variables of
// GoBGP (table.SelectionOptions, table.UseMultiplePaths): two speakers in
// one process (tests) would race on them. It does not order those writes
// before the reads of another server's sessions: tests start every speaker
// before configuring peers.
var startMu sync.Mutex

func startBgp(ctx context.Context, srv *server.BgpServer, cfg Config) error {
	startMu.Lock()
	defer startMu.Unlock()
	return srv.StartBgp(ctx, globalConfig(cfg))
}

// onPeerEvent records a session state change (GoBGP's watch goroutine).
func (s *Speaker) onPeerEvent(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := ev.Peer.State
	addr := st.NeighborAddress.Unmap()
	name := sessionState(st.SessionState)
	s.mu.Lock()
	old := s.status[addr]
	ps := peerStatus{state: name, since: at, lastError: old.lastError}
	dropped := old.state == "established" && name != "established"
	if dropped || st.DisconnectMessage != "" && name == "idle" {
		ps.lastError = disconnectText(st)
	}
	if dropped {
		s.sessionDroppedLocked(addr)
	}
	s.status[addr] = ps
	s.mu.Unlock()
	if old.state == name {
		return
	}
	s.log.Info("BGP session state", "peer", addr, "asn", st.PeerASN, "state", name, "was", old.state, "reason", ps.lastError)
	s.notify()
	if name == "established" {
		kick(s.bfdKick)
	}
}

func disconnectText(st apiutil.PeerState) string {
	if st.DisconnectMessage != "" {
		return st.DisconnectMessage
	}
	return st.DisconnectReason.String()
}

// SetPeers makes the configured sessions match peers: new ones are added,
// changed ones replaced (their session restarts), missing ones deleted
// (with a Cease).
func (s *Speaker) SetPeers(ctx context.Context, peers []Peer) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bgp: set peers: %w", err)
	}
	want := make(map[netip.Addr]Peer, len(peers))
	for _, p := range peers {
		if err := p.Validate(); err != nil {
			return err
		}
		p.Address = p.Address.Unmap()
		if _, dup := want[p.Address]; dup {
			return fmt.Errorf("bgp: peer %s listed twice", p.Address)
		}
		want[p.Address] = p
	}
	s.op.Lock()
	defer s.op.Unlock()
	if err := s.desire(func() { s.peers = want }); err != nil {
		return err
	}
	return s.syncPeers(ctx)
}

// desire records a change of the desired state unless the speaker has
// stopped; op must be held.
func (s *Speaker) desire(change func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase == stopped {
		return ErrStopped
	}
	change()
	return nil
}

// Announce makes r announced (replacing the attributes of an announced
// route with the same prefix); announcing the same route again sends
// nothing.
func (s *Speaker) Announce(ctx context.Context, r Route) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bgp: announce %s: %w", r.Prefix, err)
	}
	if err := r.Validate(); err != nil {
		return err
	}
	r.Communities = slices.Clone(r.Communities)
	r.LargeCommunities = slices.Clone(r.LargeCommunities)
	r.Peers = normPeers(r.Peers)
	s.op.Lock()
	defer s.op.Unlock()
	if err := s.desire(func() { s.routes[r.Prefix] = r }); err != nil {
		return err
	}
	if s.sentAsWanted(r.Prefix) {
		return nil // the same route again: nothing to send or tell
	}
	defer s.notify() // prefix counts changed
	return s.syncRoute(ctx, r.Prefix)
}

// sentAsWanted reports whether GoBGP has p exactly as desired.
func (s *Speaker) sentAsWanted(p netip.Prefix) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	want, ok := s.routes[p]
	have, had := s.sent[p]
	return ok && had && want.Equal(have)
}

// Withdraw makes p not announced; withdrawing an unknown prefix does
// nothing.
func (s *Speaker) Withdraw(ctx context.Context, p netip.Prefix) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bgp: withdraw %s: %w", p, err)
	}
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	delete(s.routes, p)
	s.mu.Unlock()
	defer s.notify() // prefix counts changed
	return s.syncRoute(ctx, p)
}

// Routes returns the desired routes, sorted by prefix.
func (s *Speaker) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := slices.Collect(maps.Values(s.routes))
	slices.SortFunc(rs, func(a, b Route) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return rs
}

func normPeers(ps []netip.Addr) []netip.Addr {
	if len(ps) == 0 {
		return nil
	}
	out := make([]netip.Addr, len(ps))
	for i, a := range ps {
		out[i] = a.Unmap()
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

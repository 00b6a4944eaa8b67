package members

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// Defaults: a report every Interval, fresh for Fresh (T). T plus the
// agent's withdraw time must stay well below the shortest LeaseDuration
// (docs/design.md states the bound).
const (
	DefaultInterval = 100 * time.Millisecond
	DefaultFresh    = time.Second
	DefaultPort     = 7947
)

// Config is the LAN layer's own configuration.
type Config struct {
	Node     string // this agent's node name
	Instance string // unique per process start
	Key      []byte // shared key, 16/24/32 bytes
	Port     uint16 // where every agent listens
	Interval time.Duration
	Fresh    time.Duration // T
	Clock    clock.Clock
	// OnChange, when set, is called (never under a lock, from the
	// receiving goroutine or a Set call) whenever Vouched may have turned
	// false before its time: a report saying "reachable", an agent heard
	// for the first time, a new list of peers.
	OnChange func()
}

// Peer is an agent known from the API server while it was up.
type Peer struct {
	Node        string
	Addr        netip.Addr // its node address (Node InternalIP)
	Members     bool       // it runs with members on
	Fingerprint string     // its key's Fingerprint
}

// Conn is the datagram socket (a *net.UDPConn in production).
type Conn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	Close() error
}

// member is what this agent knows of another.
type member struct {
	node      string
	addr      netip.Addr
	known     bool // from SetPeers, not only heard
	instance  string
	seq       uint64
	sent      int64 // its latest Sent, echoed back to it
	reachable bool
	since     time.Time
	held      []string
	heldCount int
	heard     time.Time // by our clock; zero: never
	vouch     time.Time // our send time it echoed in its latest report; zero: none
	away      time.Time // vouch of its latest report saying "cannot reach the API"; zero: none
}

// Members runs this agent's side of the LAN liveness.
type Members struct {
	cfg   Config
	clock clock.Clock
	seal  *sealer
	conn  Conn
	log   *slog.Logger
	start time.Time // Sent is counted from here

	mu        sync.Mutex
	peersRead bool   // SetPeers was called at least once
	peers     []Peer // as last set, sorted by node
	enabled   bool   // every known agent runs members with our key
	why       string
	members   map[string]*member
	reachable bool
	writable  bool      // reachable, and "reachable" has been sent to every agent
	since     time.Time // when reachable last changed (wall clock)
	epoch     uint64
	from      time.Time // when the current epoch began
	held      []string
	seq       uint64
	rejected  uint64 // datagrams that failed authentication
}

// New returns the LAN layer on conn. It starts "reachable" (an agent only
// starts with the API up) in epoch 0.
func New(cfg Config, conn Conn, log *slog.Logger) (*Members, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Fresh <= 0 {
		cfg.Fresh = DefaultFresh
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Node == "" || cfg.Instance == "" {
		return nil, errors.New("members: empty node or instance")
	}
	s, err := newSealer(cfg.Key)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	now := cfg.Clock.Now()
	return &Members{cfg: cfg, clock: cfg.Clock, seal: s, conn: conn, log: log, start: now,
		members: map[string]*member{}, reachable: true, writable: true, since: now, why: "agents not read yet"}, nil
}

// Fingerprint is this agent's key fingerprint.
func (m *Members) Fingerprint() string { return Fingerprint(m.cfg.Key) }

// Fresh is T.
func (m *Members) Fresh() time.Duration { return m.cfg.Fresh }

// SetPeers replaces the agents known from the API server (call it while
// the API is up). Keeping is enabled only if every one of them runs with
// members on and this agent's key; agents merely heard are dropped unless
// known. The same list again changes nothing.
func (m *Members) SetPeers(peers []Peer) {
	peers = slices.Clone(peers)
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.Node, b.Node) })
	m.mu.Lock()
	if m.peersRead && slices.Equal(peers, m.peers) {
		m.mu.Unlock()
		return
	}
	m.peersRead, m.peers = true, peers
	m.enabled, m.why = true, ""
	for _, mb := range m.members {
		mb.known = false
	}
	fp := m.Fingerprint()
	for _, p := range peers {
		if p.Node == m.cfg.Node {
			continue
		}
		mb := m.member(p.Node)
		mb.known, mb.addr = true, p.Addr
		switch {
		case !p.Members && m.enabled:
			m.enabled, m.why = false, "agent on "+p.Node+" runs without members"
		case p.Fingerprint != fp && m.enabled:
			m.enabled, m.why = false, "agent on "+p.Node+" has another members key"
		}
	}
	for n, mb := range m.members {
		if !mb.known {
			delete(m.members, n)
		}
	}
	m.mu.Unlock()
	m.changed()
}

// member returns the record of node, creating it; mu must be held.
func (m *Members) member(node string) *member {
	mb := m.members[node]
	if mb == nil {
		mb = &member{node: node}
		m.members[node] = mb
	}
	return mb
}

func (m *Members) changed() {
	if m.cfg.OnChange != nil {
		m.cfg.OnChange()
	}
}

// SetHeld sets the Services this agent holds, for the reports.
func (m *Members) SetHeld(keys []string) {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	m.mu.Lock()
	m.held = keys
	m.mu.Unlock()
}

// SetReachable records the prober's verdict. A regain starts a new epoch
// (expiry clocks start afresh from now) and sends a "reachable" report to
// every agent before it returns, before the elector may write anything.
func (m *Members) SetReachable(ok bool) {
	m.mu.Lock()
	if ok == m.reachable {
		m.mu.Unlock()
		return
	}
	now := m.clock.Now()
	m.reachable, m.since, m.writable = ok, now, false
	if ok {
		m.epoch++
		m.from = now
	}
	m.mu.Unlock()
	m.log.Info("API server reachability changed", "reachable", ok)
	if !ok {
		return
	}
	m.broadcast() // "reachable" goes out before the elector may write
	m.mu.Lock()
	m.writable = true
	m.mu.Unlock()
	m.changed() // a kept holder renews now
}

// Epoch is the follower rule's view: the current epoch, when it began
// (zero in epoch 0), and whether this agent reaches the API server. The
// elector writes only when reachable, and only in the epoch it read its
// observations in; no observation counts from before from.
func (m *Members) Epoch() (epoch uint64, from time.Time, reachable bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epoch, m.from, m.reachable && m.writable
}

// Vouched is the holder rule's view: ok while this agent may keep holding
// past its renew deadline. since is the oldest, over the required agents,
// of our send time echoed by the agent's latest report saying "cannot
// reach the API": each of them said so after since, so none regained the
// API (and started its expiry clocks afresh) before since. A holder keeps
// until since+Fresh at most.
//
// While this agent cannot reach the API itself, a latest report saying
// "reachable" ends the vouch at once. Once this agent reaches the API
// again it is renewing: the others' latest "cannot reach" reports still
// bound it (each of them regained the API after it), so a hold ends by
// since+Fresh unless renewed, and the return of the API does not make
// every holder withdraw before it could renew.
func (m *Members) Vouched() (since time.Time, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	if !m.enabled {
		return time.Time{}, false
	}
	since = now
	for _, mb := range m.members {
		t := mb.vouch
		if mb.reachable {
			if !m.reachable {
				return time.Time{}, false
			}
			t = mb.away
		}
		if mb.heard.IsZero() || t.IsZero() {
			return time.Time{}, false
		}
		since = minTime(since, t)
	}
	if now.Sub(since) >= m.cfg.Fresh {
		return time.Time{}, false
	}
	return since, true
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Enabled reports whether keeping is on for the cluster, and why not.
func (m *Members) Enabled() (bool, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enabled, m.why
}

// View is one agent as this agent sees it, for metrics and status.
type View struct {
	Node      string
	Known     bool          // known from the API (else only heard)
	Heard     bool          // a report has come in
	Age       time.Duration // bound on its latest report's age (-1: none echoing us)
	Reachable bool          // its latest report says it reaches the API
	Since     time.Time     // when its reachability last changed, by its clock
	Held      []string
	HeldCount int
}

// Views lists the other agents, sorted by node.
func (m *Members) Views() []View {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	out := make([]View, 0, len(m.members))
	for _, mb := range m.members {
		v := View{Node: mb.node, Known: mb.known, Heard: !mb.heard.IsZero(), Age: -1, Reachable: mb.reachable,
			Since: mb.since, Held: slices.Clone(mb.held), HeldCount: mb.heldCount}
		if !mb.vouch.IsZero() {
			v.Age = now.Sub(mb.vouch)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b View) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// Rejected counts datagrams that failed authentication.
func (m *Members) Rejected() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rejected
}

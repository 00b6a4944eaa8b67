package bgp

// In-process tests: speakers on loopback addresses (127.0.0.x, ::1) in the
// test's own namespace, one listening on a free port, the other dialing it.
// Nothing but loopback sockets is touched.

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	pkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

var (
	v4VIP = netip.MustParsePrefix("198.18.0.10/32")
	v6VIP = netip.MustParsePrefix("fd00:1ab::10/128")
)

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// freePort is a TCP port nothing listens on at the moment.
func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// run starts s.Run and stops it (and waits) when the test ends; the returned
// stop does it earlier.
func run(t *testing.T, s *Speaker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return 10s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newSpeaker(t *testing.T, cfg Config) *Speaker {
	t.Helper()
	cfg.Log = testLog(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pair is a listening speaker (the "router", AS 64512, on 127.0.0.1 and
// ::1) and a dialing one (the "node", AS 64513, from 127.0.0.2 and ::1),
// both running, with their sessions configured.
type pair struct {
	router, node *Speaker
	port         int32
	stopNode     func()
}

func newPair(t *testing.T, v6 bool) *pair {
	t.Helper()
	port, closed := freePort(t), freePort(t)
	listen := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	if v6 {
		listen = append(listen, netip.IPv6Loopback())
	}
	router := newSpeaker(t, Config{ASN: 64512, RouterID: netip.MustParseAddr("192.0.2.1"), ListenPort: port, ListenAddresses: listen})
	node := newSpeaker(t, Config{ASN: 64513, RouterID: netip.MustParseAddr("192.0.2.2"), SourceAddress: netip.MustParseAddr("127.0.0.2")})
	// The router would dial its peers too: point it at a closed port.
	rpeers := []Peer{{Address: netip.MustParseAddr("127.0.0.2"), ASN: 64513, Port: uint16(closed)}}
	npeers := []Peer{{Address: netip.MustParseAddr("127.0.0.1"), ASN: 64512, Port: uint16(port), ConnectTime: time.Second}}
	if v6 {
		rpeers = append(rpeers, Peer{Address: netip.IPv6Loopback(), ASN: 64513, Port: uint16(closed)})
		npeers = append(npeers, Peer{Address: netip.IPv6Loopback(), ASN: 64512, Port: uint16(port), ConnectTime: time.Second})
	}
	ctx := context.Background()
	run(t, router)
	started(t, router)
	if err := node.SetPeers(ctx, npeers); err != nil { // before Run: recorded, applied by Run
		t.Fatal(err)
	}
	stopNode := run(t, node)
	started(t, node)
	if err := router.SetPeers(ctx, rpeers); err != nil {
		t.Fatal(err)
	}
	return &pair{router: router, node: node, port: port, stopNode: stopNode}
}

// started waits until every speaker has started GoBGP. Tests configure
// peers only then: GoBGP's StartBgp writes package variables that its
// sessions read, and two GoBGP servers in one process race on them
// unless every start happens before every session (one speaker per
// process, as in the agent, has no such issue).
func started(t *testing.T, ss ...*Speaker) {
	t.Helper()
	for _, s := range ss {
		eventually(t, 5*time.Second, "speaker started", func() bool { s.op.Lock(); defer s.op.Unlock(); return s.srv != nil })
	}
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func established(t *testing.T, s *Speaker, n int) func() bool {
	return func() bool {
		ps, err := s.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		up := 0
		for _, p := range ps {
			if p.State == "established" {
				up++
			}
		}
		return up == n
	}
}

// received is a route as the receiving speaker's RIB holds it.
type received struct {
	NextHop     netip.Addr
	Communities []uint32
	Large       []LargeCommunity
}

// rib reads s's global RIB (both families).
func rib(t *testing.T, s *Speaker) map[netip.Prefix]received {
	t.Helper()
	s.op.Lock()
	defer s.op.Unlock()
	out := map[netip.Prefix]received{}
	if s.srv == nil {
		return out
	}
	for _, f := range []pkt.Family{pkt.RF_IPv4_UC, pkt.RF_IPv6_UC} {
		err := s.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: f}, func(n pkt.NLRI, ps []*apiutil.Path) {
			for _, p := range ps {
				out[n.(*pkt.IPAddrPrefix).Prefix] = receivedOf(p)
			}
		})
		if err != nil {
			t.Fatalf("ListPath: %v", err)
		}
	}
	return out
}

func receivedOf(p *apiutil.Path) received {
	var r received
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *pkt.PathAttributeNextHop:
			r.NextHop = a.Value
		case *pkt.PathAttributeMpReachNLRI:
			r.NextHop = a.Nexthop
		case *pkt.PathAttributeCommunities:
			r.Communities = a.Value
		case *pkt.PathAttributeLargeCommunities:
			for _, c := range a.Values {
				r.Large = append(r.Large, LargeCommunity{Global: c.ASN, Local1: c.LocalData1, Local2: c.LocalData2})
			}
		}
	}
	return r
}

func TestAnnounceWithdrawIPv4IPv6(t *testing.T) {
	p := newPair(t, true)
	ctx := context.Background()
	eventually(t, 20*time.Second, "two sessions established", established(t, p.node, 2))
	select {
	case <-p.node.Changes():
	default:
		t.Errorf("sessions came up and Changes was not signalled")
	}
	large := []LargeCommunity{{Global: 4200000000, Local1: 1, Local2: 2}}
	for _, r := range []Route{{Prefix: v4VIP, Communities: []uint32{65000<<16 | 100}}, {Prefix: v6VIP, LargeCommunities: large}} {
		if err := p.node.Announce(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	want := map[netip.Prefix]received{
		v4VIP: {NextHop: netip.MustParseAddr("127.0.0.2"), Communities: []uint32{65000<<16 | 100}},
		v6VIP: {NextHop: netip.IPv6Loopback(), Large: large},
	}
	eventually(t, 5*time.Second, "both routes on the router", func() bool { return len(rib(t, p.router)) == 2 })
	if diff := cmp.Diff(want, rib(t, p.router), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("router RIB (-want +got):\n%s", diff)
	}
	ps, err := p.node.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range ps {
		if ps.PrefixesSent != 1 || ps.Since.IsZero() {
			t.Errorf("peer %s: %d prefixes sent since %v, want 1 since a time", ps.Address, ps.PrefixesSent, ps.Since)
		}
	}

	if err := p.node.Withdraw(ctx, v4VIP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the IPv4 route withdrawn", func() bool { _, ok := rib(t, p.router)[v4VIP]; return !ok })
	if _, ok := rib(t, p.router)[v6VIP]; !ok {
		t.Errorf("the IPv6 route went with the IPv4 one")
	}
	if err := p.node.Withdraw(ctx, netip.MustParsePrefix("198.18.0.99/32")); err != nil {
		t.Errorf("withdrawing an unknown prefix: %v", err)
	}
}

// TestAnnounceIdempotent: announcing the same route again sends no UPDATE;
// changing its attributes sends one and replaces it.
func TestAnnounceIdempotent(t *testing.T) {
	p := newPair(t, false)
	ctx := context.Background()
	eventually(t, 20*time.Second, "session established", established(t, p.node, 1))
	r := Route{Prefix: v4VIP}
	if err := p.node.Announce(ctx, r); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "route on the router", func() bool { return len(rib(t, p.router)) == 1 })
	before := updatesSent(t, p.node)
	for range 5 {
		if err := p.node.Announce(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	r.Communities = []uint32{65000<<16 | 7}
	if err := p.node.Announce(ctx, r); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "community on the router", func() bool {
		return slices.Equal(rib(t, p.router)[v4VIP].Communities, r.Communities)
	})
	if got := updatesSent(t, p.node) - before; got != 1 {
		t.Errorf("5 identical Announces and 1 changed one sent %d UPDATEs, want 1", got)
	}
	if got := len(rib(t, p.router)); got != 1 {
		t.Errorf("router holds %d routes, want 1", got)
	}
}

func updatesSent(t *testing.T, s *Speaker) uint64 {
	t.Helper()
	s.op.Lock()
	defer s.op.Unlock()
	var n uint64
	for _, c := range sentUpdates(s.srv, false) {
		n += c
	}
	return n
}

// TestSetPeersRemovesPeer: a peer left out of SetPeers is deleted; its
// session closes and the router drops the node's routes.
func TestSetPeersRemovesPeer(t *testing.T) {
	p := newPair(t, true)
	ctx := context.Background()
	eventually(t, 20*time.Second, "two sessions established", established(t, p.node, 2))
	if err := p.node.Announce(ctx, Route{Prefix: v4VIP}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "route on the router", func() bool { return len(rib(t, p.router)) == 1 })
	keep := []Peer{{Address: netip.IPv6Loopback(), ASN: 64512, Port: uint16(p.port), ConnectTime: time.Second}}
	if err := p.node.SetPeers(ctx, keep); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "IPv4 route gone from the router", func() bool { return len(rib(t, p.router)) == 0 })
	ps, err := p.node.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Address != netip.IPv6Loopback() || ps[0].State != "established" {
		t.Errorf("peers after SetPeers: %+v, want only ::1 established", ps)
	}
	// Level-triggered: the same list again changes nothing.
	if err := p.node.SetPeers(ctx, keep); err != nil {
		t.Fatal(err)
	}
	if !established(t, p.node, 1)() {
		t.Errorf("the same SetPeers again disturbed the session")
	}
}

// TestRunEndWithdrawsBeforeCease: when Run's context ends the router sees
// the route withdrawn while the session is still up, then the session
// closed by a Cease NOTIFICATION.
func TestRunEndWithdrawsBeforeCease(t *testing.T) {
	p := newPair(t, false)
	ctx := context.Background()
	eventually(t, 20*time.Second, "session established", established(t, p.node, 1))
	// Both ends: the router may still be finishing its side (a loaded CI
	// machine showed the route late once).
	eventually(t, 20*time.Second, "router's session established", established(t, p.router, 1))
	if err := p.node.Announce(ctx, Route{Prefix: v4VIP}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "route on the router", func() bool { return len(rib(t, p.router)) == 1 })
	events := watch(t, p.router)
	p.stopNode()
	if err := p.node.Announce(ctx, Route{Prefix: v6VIP}); err == nil {
		t.Errorf("Announce after Run returned: no error, want ErrStopped")
	}
	var got []string
	for ev := range events {
		got = append(got, ev)
		if ev == "peer down" {
			break
		}
	}
	if diff := cmp.Diff([]string{"withdraw " + v4VIP.String(), "peer down"}, got); diff != "" {
		t.Errorf("router's events (-want +got):\n%s", diff)
	}
	var ps []PeerState
	eventually(t, 5*time.Second, "the router's LastError", func() bool {
		var err error
		if ps, err = p.router.Peers(ctx); err != nil {
			t.Fatal(err)
		}
		return ps[0].LastError != ""
	})
	if !strings.Contains(ps[0].LastError, "cease") {
		t.Errorf("router's LastError %q, want a Cease", ps[0].LastError)
	}
	t.Logf("router's peer after the node stopped: %+v", ps[0])
}

// watch reports the router's best-path withdrawals and session downs, in
// GoBGP's order (one watcher, one channel).
func watch(t *testing.T, s *Speaker) <-chan string {
	t.Helper()
	out := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s.op.Lock()
	srv := s.srv
	s.op.Unlock()
	cb := server.WatchEventMessageCallbacks{
		OnBestPath: func(ps []*apiutil.Path, _ time.Time) {
			for _, p := range ps {
				if p.Withdrawal {
					out <- "withdraw " + p.Nlri.String()
				}
			}
		},
		OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
			if ev.Type == apiutil.PEER_EVENT_STATE && ev.Peer.State.SessionState != pkt.BGP_FSM_ESTABLISHED {
				select {
				case out <- "peer down":
				default:
				}
			}
		},
	}
	if err := srv.WatchEvent(ctx, cb, server.WatchBestPath(false), server.WatchPeer()); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRoutePeersRestrict: a route with Peers goes only to those peers;
// changing its Peers moves it (the export policy and a soft reset out);
// other routes still go everywhere.
func TestRoutePeersRestrict(t *testing.T) {
	ctx := context.Background()
	r1Addr, r2Addr, nodeAddr := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.2")
	p1, p2, closed := freePort(t), freePort(t), freePort(t)
	node := newSpeaker(t, Config{ASN: 64513, RouterID: netip.MustParseAddr("192.0.2.2"), SourceAddress: nodeAddr})
	var routers []*Speaker
	for i, at := range []struct {
		addr netip.Addr
		port int32
	}{{r1Addr, p1}, {r2Addr, p2}} {
		r := newSpeaker(t, Config{ASN: 64512, RouterID: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), ListenPort: at.port, ListenAddresses: []netip.Addr{at.addr}})
		run(t, r)
		routers = append(routers, r)
	}
	run(t, node)
	started(t, node, routers[0], routers[1])
	for _, r := range routers {
		if err := r.SetPeers(ctx, []Peer{{Address: nodeAddr, ASN: 64513, Port: uint16(closed)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := node.SetPeers(ctx, []Peer{{Address: r1Addr, ASN: 64512, Port: uint16(p1), ConnectTime: time.Second}, {Address: r2Addr, ASN: 64512, Port: uint16(p2), ConnectTime: time.Second}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "two sessions established", established(t, node, 2))
	other := netip.MustParsePrefix("198.18.0.20/32")
	for _, r := range []Route{{Prefix: v4VIP, Peers: []netip.Addr{r1Addr}}, {Prefix: other}} {
		if err := node.Announce(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	has := func(i int, p netip.Prefix) bool { _, ok := rib(t, routers[i])[p]; return ok }
	eventually(t, 5*time.Second, "the open route on both routers", func() bool { return has(0, other) && has(1, other) })
	if !has(0, v4VIP) || has(1, v4VIP) {
		t.Errorf("route for router 1 only: on router 1 %v, on router 2 %v; want true, false", has(0, v4VIP), has(1, v4VIP))
	}
	if err := node.Announce(ctx, Route{Prefix: v4VIP, Peers: []netip.Addr{r2Addr}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the route moved to router 2", func() bool { return !has(0, v4VIP) && has(1, v4VIP) })
	if err := node.Announce(ctx, Route{Prefix: v4VIP}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the route unrestricted", func() bool { return has(0, v4VIP) && has(1, v4VIP) })
	if !has(0, other) || !has(1, other) {
		t.Errorf("the open route was lost on the way")
	}
}

// TestRunTwice: a Speaker runs once.
func TestRunTwice(t *testing.T) {
	s := newSpeaker(t, Config{ASN: 64512, RouterID: netip.MustParseAddr("192.0.2.1")})
	stop := run(t, s)
	started(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Run(ctx); err == nil {
		t.Errorf("second Run: no error")
	}
	stop()
	if err := s.SetPeers(context.Background(), nil); err == nil {
		t.Errorf("SetPeers after Run: no error, want ErrStopped")
	}
}

// TestLocalASN: a peer's LocalASN is the AS the router sees (MetalLB's
// myASN), not the speaker's own.
func TestLocalASN(t *testing.T) {
	ctx := context.Background()
	port, closed := freePort(t), freePort(t)
	router := newSpeaker(t, Config{ASN: 64512, RouterID: netip.MustParseAddr("192.0.2.1"), ListenPort: port, ListenAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	node := newSpeaker(t, Config{ASN: 64513, RouterID: netip.MustParseAddr("192.0.2.2"), SourceAddress: netip.MustParseAddr("127.0.0.2")})
	run(t, router)
	run(t, node)
	started(t, router, node)
	if err := router.SetPeers(ctx, []Peer{{Address: netip.MustParseAddr("127.0.0.2"), ASN: 64999, Port: uint16(closed)}}); err != nil {
		t.Fatal(err)
	}
	if err := node.SetPeers(ctx, []Peer{{Address: netip.MustParseAddr("127.0.0.1"), ASN: 64512, LocalASN: 64999, Port: uint16(port), ConnectTime: time.Second}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "session established as AS 64999", established(t, router, 1))
}

// SetRouterID refuses an IPv6 id, and the same id again asks for no
// restart (the restart itself is TestBIRDRouterID: two GoBGP servers in
// one process race on GoBGP's package variables when one restarts).
func TestSetRouterIDSame(t *testing.T) {
	s := newSpeaker(t, Config{ASN: 64513, RouterID: netip.MustParseAddr("192.0.2.2")})
	run(t, s)
	started(t, s)
	if err := s.SetRouterID(netip.MustParseAddr("fd00::1")); err == nil {
		t.Error("IPv6 router id accepted")
	}
	if err := s.SetRouterID(netip.MustParseAddr("192.0.2.2")); err != nil {
		t.Fatal(err)
	}
	if len(s.restartKick) != 0 {
		t.Error("the same router id asks for a restart")
	}
}

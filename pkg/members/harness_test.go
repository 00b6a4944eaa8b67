package members

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

// lan is an in-memory network of fake sockets: WriteTo queues, pump
// delivers. drop cuts a node off (both directions).
type lan struct {
	mu    sync.Mutex
	conns map[netip.Addr]*fakeConn
	drop  map[netip.Addr]bool
	sent  [][]byte // every datagram written, for replay tests
	// onWrite, if set, runs (without the lock) before each datagram is
	// queued.
	onWrite func()
}

type datagram struct {
	b    []byte
	from netip.AddrPort
}

type fakeConn struct {
	lan   *lan
	addr  netip.Addr
	queue []datagram
}

func (c *fakeConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed // tests pump instead
}

func (c *fakeConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if c.lan.onWrite != nil {
		c.lan.onWrite()
	}
	c.lan.mu.Lock()
	defer c.lan.mu.Unlock()
	c.lan.sent = append(c.lan.sent, append([]byte(nil), b...))
	dst := c.lan.conns[to.Addr()]
	if dst == nil || c.lan.drop[c.addr] || c.lan.drop[to.Addr()] {
		return len(b), nil
	}
	dst.queue = append(dst.queue, datagram{append([]byte(nil), b...), netip.AddrPortFrom(c.addr, DefaultPort)})
	return len(b), nil
}

func (c *fakeConn) Close() error { return nil }

// agent is one Members on the fake LAN.
type agent struct {
	*Members
	conn    *fakeConn
	changes int
}

type cluster struct {
	t      *testing.T
	clock  *clocktest.Fake
	lan    *lan
	agents map[string]*agent
	peers  []Peer
}

var (
	key      = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210")
)

func newCluster(t *testing.T, nodes ...string) *cluster {
	c := &cluster{t: t, clock: clocktest.New(time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC)),
		lan: &lan{conns: map[netip.Addr]*fakeConn{}, drop: map[netip.Addr]bool{}}, agents: map[string]*agent{}}
	for i, n := range nodes {
		addr := netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)})
		c.peers = append(c.peers, Peer{Node: n, Addr: addr, Members: true, Fingerprint: Fingerprint(key)})
		c.add(n, addr, key)
	}
	for _, a := range c.agents {
		a.SetPeers(c.peers)
	}
	return c
}

func (c *cluster) add(node string, addr netip.Addr, k []byte) *agent {
	conn := &fakeConn{lan: c.lan, addr: addr}
	c.lan.mu.Lock()
	c.lan.conns[addr] = conn
	c.lan.mu.Unlock()
	a := &agent{conn: conn}
	m, err := New(Config{Node: node, Instance: node + "-1", Key: k, Clock: c.clock, OnChange: func() { a.changes++ }}, conn, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	a.Members = m
	c.agents[node] = a
	return a
}

// round makes every agent send once, then delivers everything.
func (c *cluster) round() {
	for _, a := range c.agents {
		a.broadcast()
	}
	c.pump()
}

func (c *cluster) pump() {
	for _, a := range c.agents {
		q := a.conn.queue
		a.conn.queue = nil
		for _, d := range q {
			a.handle(d.b, d.from)
		}
	}
}

// rounds runs n rounds, Interval apart.
func (c *cluster) rounds(n int) {
	for range n {
		c.round()
		c.clock.Step(DefaultInterval)
	}
}

func (c *cluster) setReachable(ok bool, nodes ...string) {
	for _, n := range nodes {
		c.agents[n].SetReachable(ok)
	}
}

func netip4(last byte) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, last}) }

// AddrPort is where p listens.
func (p Peer) AddrPort() netip.AddrPort { return netip.AddrPortFrom(p.Addr, DefaultPort) }

package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

// fakeClock is the shared fake clock; every timer Reset is reported on
// resets, so a test knows when Run has finished a step and waits again.
type fakeClock struct {
	*clocktest.Fake
	resets chan time.Time
}

func newFakeClock() *fakeClock {
	c := &fakeClock{Fake: clocktest.New(t0), resets: make(chan time.Time, 64)}
	c.OnReset(func(at time.Time) { c.resets <- at })
	return c
}

// frame is a message the client sent through fakeConn.
type frame struct {
	msg      *dhcpv4.DHCPv4
	src, dst netip.Addr
	dstMAC   net.HardwareAddr
}

// fakeConn hands the client the replies a test injects and records what it
// sends.
type fakeConn struct {
	replies chan []byte
	sent    chan frame

	mu          sync.Mutex
	stop        chan struct{} // closed by interrupt
	interrupted bool
	closed      bool
}

func newFakeConn() *fakeConn {
	return &fakeConn{replies: make(chan []byte, 16), sent: make(chan frame, 64), stop: make(chan struct{})}
}

func (c *fakeConn) recv() ([]byte, net.HardwareAddr, error) {
	c.mu.Lock()
	stop, closed := c.stop, c.closed
	c.mu.Unlock()
	if closed {
		return nil, nil, net.ErrClosed
	}
	select {
	case b := <-c.replies:
		return b, serverHW, nil
	case <-stop:
		return nil, nil, errors.New("interrupted")
	}
}

func (c *fakeConn) send(payload []byte, src, dst netip.Addr, dstMAC net.HardwareAddr) error {
	msg, err := dhcpv4.FromBytes(payload)
	if err != nil {
		return err
	}
	c.sent <- frame{msg, src, dst, dstMAC}
	return nil
}

func (c *fakeConn) interrupt() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.interrupted {
		close(c.stop)
		c.interrupted = true
	}
	return nil
}

func (c *fakeConn) resume() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interrupted {
		c.stop = make(chan struct{})
		c.interrupted = false
	}
	return nil
}

func (c *fakeConn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if !c.interrupted {
		close(c.stop)
		c.interrupted = true
	}
	return nil
}

// harness runs a Client on fakes.
type harness struct {
	t       *testing.T
	c       *Client
	clock   *fakeClock
	conn    *fakeConn
	changes chan struct{}
	cancel  context.CancelFunc
	done    chan error
}

// failsafe bounds every wait; only a broken test waits that long.
const failsafe = 5 * time.Second

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, clock: newFakeClock(), conn: newFakeConn(), changes: make(chan struct{}, 16)}
	cfg.Interface = "mv0"
	cfg.OnChange = func() { h.changes <- struct{}{} }
	h.c = newClient(cfg, clientHW, 1500, h.conn, h.clock)
	// Deterministic xids: 1, 2, 3 ...
	var n uint32
	h.c.p.(v4).m.newXID = func() dhcpv4.TransactionID { n++; return xid(n) }
	h.c.p.(v4).m.log = slog.New(slog.DiscardHandler)
	t.Cleanup(h.stop)
	return h
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.c.Run(ctx) }()
	h.idle()
}

func (h *harness) stop() {
	if h.done == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(failsafe):
		h.t.Fatal("Run did not return after its context ended")
	}
	h.done = nil
}

// idle waits until Run has finished a step, and returns when its timer is
// due.
func (h *harness) idle() time.Time {
	h.t.Helper()
	select {
	case at := <-h.clock.resets:
		return at
	case <-time.After(failsafe):
		h.t.Fatal("Run did not finish a step")
		return time.Time{}
	}
}

// sent returns the next message the client sent.
func (h *harness) sent() sent {
	h.t.Helper()
	select {
	case f := <-h.conn.sent:
		return summarize([]outgoing{{msg: f.msg, src: f.src, dst: f.dst, dstMAC: f.dstMAC}})[0]
	case <-time.After(failsafe):
		h.t.Fatal("nothing sent")
		return sent{}
	}
}

func (h *harness) nothingSent() {
	h.t.Helper()
	select {
	case f := <-h.conn.sent:
		h.t.Errorf("sent %v, want nothing", f.msg.MessageType())
	default:
	}
}

// reply injects a server message and waits until Run has handled it.
func (h *harness) reply(s srv) time.Time {
	h.t.Helper()
	h.conn.replies <- s.msg().ToBytes()
	return h.idle()
}

// at moves the clock to t0+d and waits until Run has handled the timer.
func (h *harness) at(d time.Duration) time.Time {
	h.t.Helper()
	h.clock.Set(t0.Add(d))
	return h.idle()
}

// changed checks how many times OnChange was called since the last check.
// Run calls it after resetting its timer, so after idle it may still be on
// its way: wait for the calls wanted, then count any extra ones.
func (h *harness) changed(want int) {
	h.t.Helper()
	got := 0
	giveUp := time.After(failsafe)
	for got < want {
		select {
		case <-h.changes:
			got++
		case <-giveUp:
			h.t.Errorf("OnChange called %d times, want %d", got, want)
			return
		}
	}
	for len(h.changes) > 0 {
		<-h.changes
		got++
	}
	if got != want {
		h.t.Errorf("OnChange called %d times, want %d", got, want)
	}
}

func (h *harness) lease() (netip.Addr, time.Time) {
	l, ok := h.c.Lease()
	if !ok {
		return netip.Addr{}, time.Time{}
	}
	return l.Addr, l.Acquired
}

// acquire runs the client to a lease of addrA at t0 (rapid commit).
func (h *harness) acquire() {
	h.t.Helper()
	h.run()
	if got, want := h.sent(), discover(1, 0, netip.Addr{}); !cmp.Equal(got, want, cmpNetip) {
		h.t.Fatalf("first message: %s", cmp.Diff(want, got, cmpNetip))
	}
	a := ackOf(1, addrA)
	a.Rapid = true
	if next := h.reply(a); !next.Equal(t0.Add(sec(60))) {
		h.t.Fatalf("after the ACK the timer is at %v, want T1", next.Sub(t0))
	}
	h.changed(1)
}

func TestRunLifecycle(t *testing.T) {
	h := newHarness(t, Config{})
	h.acquire()
	if a, at := h.lease(); a != addrA || !at.Equal(t0) {
		t.Fatalf("Lease() = %v acquired %v, want %v at t0", a, at, addrA)
	}

	// T1: unicast renewal; the ACK moves the times, not the binding.
	h.at(sec(60))
	if diff := cmp.Diff(renew(2, 0, addrA), h.sent(), cmpNetip); diff != "" {
		t.Errorf("at T1 (-want +got)\n%s", diff)
	}
	h.clock.Set(t0.Add(sec(60.5)))
	if next := h.reply(ackOf(2, addrA)); !next.Equal(t0.Add(sec(120))) {
		t.Errorf("after renewal the timer is at %v, want the new T1 (120s)", next.Sub(t0))
	}
	if a, at := h.lease(); a != addrA || !at.Equal(t0.Add(sec(60.5))) {
		t.Errorf("after renewal Lease() = %v acquired %v, want %v at 60.5s", a, at.Sub(t0), addrA)
	}
	h.changed(0)

	// No answers: renewing until T2 (165 s), rebinding until expiry (180 s),
	// then a DISCOVER for the address lost.
	var renewing, rebinding []time.Duration
	next := h.at(sec(120))
	for {
		s := h.sent()
		now := h.clock.Now().Sub(t0)
		if s.Type == "DISCOVER" {
			if now != sec(180) || next.Sub(t0) != sec(181) || s.Requested != addrA {
				t.Errorf("DISCOVER for %v at %v, timer at %v; want for %v at 180s, timer at 181s", s.Requested, now, next.Sub(t0), addrA)
			}
			break
		}
		if s.Dst == server1 {
			renewing = append(renewing, now)
		} else {
			rebinding = append(rebinding, now)
		}
		next = h.at(next.Sub(t0))
	}
	wantRenewing := []time.Duration{sec(120), sec(142.5), sec(153.75), sec(159.375), sec(162.1875), sec(163.59375), sec(164.59375)}
	wantRebinding := []time.Duration{sec(165), sec(172.5), sec(176.25), sec(178.125), sec(179.125)}
	if diff := cmp.Diff(wantRenewing, renewing); diff != "" {
		t.Errorf("renewing REQUESTs (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff(wantRebinding, rebinding); diff != "" {
		t.Errorf("rebinding REQUESTs (-want +got)\n%s", diff)
	}
	h.changed(1)
	if _, ok := h.c.Lease(); ok {
		t.Error("Lease() after expiry: still one")
	}
	h.stop()
	if err := h.c.Release(); err != nil {
		t.Errorf("Release without a lease: %v", err)
	}
	h.nothingSent()
}

func TestRunReleaseAndRestart(t *testing.T) {
	h := newHarness(t, Config{})
	h.acquire()
	if err := h.c.Release(); err == nil {
		t.Error("Release while Run runs: no error")
	}
	h.stop()
	if err := h.c.Release(); err != nil {
		t.Fatal(err)
	}
	want := sent{Type: "RELEASE", XID: 2, Src: addrA, Dst: server1, DstMAC: serverHW.String(), Ciaddr: addrA, Server: server1}
	if diff := cmp.Diff(want, h.sent(), cmpNetip); diff != "" {
		t.Errorf("release (-want +got)\n%s", diff)
	}
	if _, ok := h.c.Lease(); ok {
		t.Error("Lease() after Release: still one")
	}
	h.changed(0)

	h.run() // starts over, asking for the address released
	if diff := cmp.Diff(discover(3, 0, addrA), h.sent(), cmpNetip); diff != "" {
		t.Errorf("Run after Release (-want +got)\n%s", diff)
	}
}

func TestRunKeepsLeaseAcrossRestart(t *testing.T) {
	h := newHarness(t, Config{})
	h.acquire()
	h.stop()
	h.clock.Set(t0.Add(sec(30)))
	if a, _ := h.lease(); a != addrA {
		t.Fatalf("Lease() after Run returned = %v, want %v", a, addrA)
	}
	h.run()
	h.nothingSent()
	h.changed(0)
	// Run ended and the lease ran out meanwhile: Lease() says so without Run.
	h.stop()
	h.clock.Set(t0.Add(sec(120)))
	if _, ok := h.c.Lease(); ok {
		t.Error("Lease() after expiry: still one")
	}
}

func TestRunRequestedIPAndHostname(t *testing.T) {
	h := newHarness(t, Config{RequestedIP: addrB, Hostname: "svc-web"})
	h.run()
	select {
	case f := <-h.conn.sent:
		if got := addr4(f.msg.RequestedIPAddress()); got != addrB {
			t.Errorf("DISCOVER asks for %v, want %v", got, addrB)
		}
		if got := f.msg.HostName(); got != "svc-web" {
			t.Errorf("DISCOVER hostname %q, want svc-web", got)
		}
	case <-time.After(failsafe):
		t.Fatal("nothing sent")
	}
}

func TestRunOnce(t *testing.T) {
	h := newHarness(t, Config{})
	h.run()
	if err := h.c.Run(context.Background()); err == nil {
		t.Error("second concurrent Run: no error")
	}
}

func TestRunReturnsOnClose(t *testing.T) {
	h := newHarness(t, Config{})
	h.run()
	if err := h.c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.done:
		if err == nil {
			t.Error("Run returned nil after Close, want an error")
		}
	case <-time.After(failsafe):
		t.Fatal("Run did not return after Close")
	}
	h.done = nil
	if err := h.c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := h.c.Run(context.Background()); err == nil {
		t.Error("Run after Close: no error")
	}
}

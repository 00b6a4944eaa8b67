package announce

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

// failsafe bounds how long a test waits for the Run goroutine to reach a
// state it must reach; it only matters when a test is failing.
const failsafe = 10 * time.Second

// fakeClock is the shared fake clock, with the waits these tests need.
// Run uses one timer.
type fakeClock struct{ *clocktest.Fake }

var clockStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func newFakeClock() *fakeClock { return &fakeClock{clocktest.New(clockStart)} }

// AdvanceTo moves the clock forward to start+at and fires the timer if it
// is due.
func (f *fakeClock) AdvanceTo(at time.Duration) { f.Set(clockStart.Add(at)) }

// Since returns how long after the start the clock is.
func (f *fakeClock) Since() time.Duration { return f.Elapsed() }

// waitArmed waits until the timer is armed for start+at.
func (f *fakeClock) waitArmed(t *testing.T, at time.Duration) {
	t.Helper()
	f.waitFor(t, "armed for start+"+at.String(), func(s clocktest.TimerState) bool {
		return s.State == clocktest.Armed && s.At.Equal(clockStart.Add(at))
	})
}

// waitStopped waits until the timer is stopped.
func (f *fakeClock) waitStopped(t *testing.T) {
	t.Helper()
	f.waitFor(t, "stopped", func(s clocktest.TimerState) bool { return s.State == clocktest.Stopped })
}

// waitFor waits until every timer Run made is in the wanted state (and
// Run made one).
func (f *fakeClock) waitFor(t *testing.T, what string, want func(clocktest.TimerState) bool) {
	t.Helper()
	ok := f.Await(failsafe, func() bool {
		timers := f.Timers()
		return len(timers) > 0 && !slices.ContainsFunc(timers, func(s clocktest.TimerState) bool { return !want(s) })
	})
	if !ok {
		t.Fatalf("timer never became %s; timers: %v", what, f.Timers())
	}
}

// fakeSend is one announcement seen by a fakeConn.
type fakeSend struct {
	At   time.Duration // since the fake clock's start
	Addr netip.Addr
}

// fakeConn records announcements with the fake time they were sent at.
type fakeConn struct {
	clk *fakeClock

	mu     sync.Mutex
	sends  []fakeSend
	fail   bool // Announce returns an error (and still records the send)
	closed int
}

func (c *fakeConn) Announce(addr netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sends = append(c.sends, fakeSend{At: c.clk.Since(), Addr: addr})
	if c.fail {
		return errors.New("fake send failure")
	}
	return nil
}

func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed++
	return nil
}

func (c *fakeConn) Sends() []fakeSend {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]fakeSend(nil), c.sends...)
}

func (c *fakeConn) Closed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

package announce

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// failsafe bounds how long a test waits for the Run goroutine to reach a
// state it must reach; it only matters when a test is failing.
const failsafe = 10 * time.Second

type timerState int

const (
	stopped timerState = iota // never armed, or Stop called
	armed                     // Reset called, not fired yet
	fired                     // deadline reached, value sent on C
)

// fakeClock is a manual clock with the one timer Run uses. Time moves only
// in Advance. Its timer has the Go 1.23 semantics the real one has: Reset
// and Stop discard an unreceived value, and Reset to a passed time fires at
// once.
type fakeClock struct {
	start time.Time

	mu       sync.Mutex
	now      time.Time
	state    timerState
	deadline time.Time
	c        chan time.Time // capacity 1
	changed  chan struct{}  // capacity 1: the timer state changed
}

func newFakeClock() *fakeClock {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	return &fakeClock{start: start, now: start, c: make(chan time.Time, 1), changed: make(chan struct{}, 1)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer() timer { return f }

func (f *fakeClock) C() <-chan time.Time { return f.c }

func (f *fakeClock) Reset(at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drain()
	f.state, f.deadline = armed, at
	f.fireIfDue()
	f.notify()
}

func (f *fakeClock) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drain()
	f.state = stopped
	f.notify()
}

// AdvanceTo moves the clock forward to start+at and fires the timer if it
// is due.
func (f *fakeClock) AdvanceTo(at time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if to := f.start.Add(at); to.After(f.now) {
		f.now = to
	}
	f.fireIfDue()
}

// Since returns how long after the start the clock is.
func (f *fakeClock) Since() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now.Sub(f.start)
}

func (f *fakeClock) drain() {
	select {
	case <-f.c:
	default:
	}
}

func (f *fakeClock) fireIfDue() {
	if f.state == armed && !f.deadline.After(f.now) {
		f.state = fired
		f.c <- f.now
		f.notify()
	}
}

func (f *fakeClock) notify() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// waitArmed waits until the timer is armed for start+at.
func (f *fakeClock) waitArmed(t *testing.T, at time.Duration) {
	t.Helper()
	f.waitFor(t, "armed for start+"+at.String(), func() bool {
		return f.state == armed && f.deadline.Equal(f.start.Add(at))
	})
}

// waitStopped waits until the timer is stopped.
func (f *fakeClock) waitStopped(t *testing.T) {
	t.Helper()
	f.waitFor(t, "stopped", func() bool { return f.state == stopped })
}

func (f *fakeClock) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(failsafe)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		ok := cond()
		state, at := f.state, f.deadline.Sub(f.start)
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-f.changed:
		case <-deadline.C:
			t.Fatalf("timer never became %s; it is in state %d for start+%v", what, state, at)
		}
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

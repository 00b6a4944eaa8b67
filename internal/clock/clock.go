// Package clock is the time seam of vigil's timer-driven packages (announce,
// dhcp, election): the real clock in production, a hand-driven one in tests
// (package clocktest).
package clock

import (
	"math"
	"time"
)

// Clock is a time source.
type Clock interface {
	Now() time.Time
	// NewTimer returns a stopped timer.
	NewTimer() Timer
	// AfterFunc calls f in its own goroutine at time at (at once if at has
	// passed), unless the returned timer is stopped first. Its C is nil;
	// Reset re-arms it to call f again.
	AfterFunc(at time.Time, f func()) Timer
}

// Timer is a single timer, with the semantics of time.Timer since Go 1.23:
// after Reset or Stop returns, no stale value is received from C.
type Timer interface {
	C() <-chan time.Time
	// Reset makes the timer fire at time at, or at once if at has passed.
	Reset(at time.Time)
	Stop()
}

// Real is the wall clock.
type Real struct{}

// Now is time.Now.
func (Real) Now() time.Time { return time.Now() }

// NewTimer returns a stopped time.Timer.
func (Real) NewTimer() Timer {
	t := time.NewTimer(math.MaxInt64)
	t.Stop()
	return realTimer{t}
}

// AfterFunc is time.AfterFunc with an absolute time.
func (Real) AfterFunc(at time.Time, f func()) Timer {
	return realTimer{time.AfterFunc(time.Until(at), f)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Reset(at time.Time)  { t.t.Reset(time.Until(at)) }
func (t realTimer) Stop()               { t.t.Stop() }

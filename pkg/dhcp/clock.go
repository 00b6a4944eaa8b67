package dhcp

import (
	"math"
	"time"
)

// clock is the time source of a Client; tests replace it.
type clock interface {
	Now() time.Time
	// NewTimer returns a stopped timer.
	NewTimer() timer
}

// timer is a single timer with the semantics of time.Timer since Go 1.23:
// after Reset or Stop returns, no stale value is received from C.
type timer interface {
	C() <-chan time.Time
	// Reset makes the timer fire at time at, or at once if at has passed.
	Reset(at time.Time)
	Stop()
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer() timer {
	t := time.NewTimer(math.MaxInt64)
	t.Stop()
	return realTimer{t}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Reset(at time.Time)  { t.t.Reset(time.Until(at)) }
func (t realTimer) Stop()               { t.t.Stop() }

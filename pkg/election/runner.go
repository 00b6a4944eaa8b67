package election

import (
	"context"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// runner runs one race's steps, one at a time, on a goroutine that exists
// only while a step is due: a candidacy costs no goroutine (and no stack)
// while it waits for its timer or the informer, which is most of its life
// and, with thousands of Services, most of the agent's goroutines.
//
// A step is due when the timer the last step asked for fires, or on a
// kick (the informer saw its Lease, room under MaxHeld, ...). A kick
// during a step runs one more step right after it.
type runner struct {
	clock clock.Clock
	step  func(context.Context) time.Time // returns when to step again (zero: only on a kick)

	mu       sync.Mutex
	timer    clock.Timer     // armed for the next step (nil: never armed)
	ctx      context.Context // the steps' context, from start (nil before)
	cancel   context.CancelFunc
	stepping bool          // a goroutine steps now
	again    bool          // kicked while stepping: step once more
	stopped  bool          // stop was called: no more steps
	idle     chan struct{} // closed when the stepping goroutine saw stopped
}

// newRunner returns a runner of step, not started.
func newRunner(clk clock.Clock, step func(context.Context) time.Time) *runner {
	return &runner{clock: clk, step: step, idle: make(chan struct{})}
}

// start takes the first step at once, and gives every step a context
// derived from ctx (cancelled by stop). Kicks before start do nothing.
func (u *runner) start(ctx context.Context) {
	u.mu.Lock()
	if u.ctx != nil || u.stopped {
		u.mu.Unlock()
		return
	}
	u.ctx, u.cancel = context.WithCancel(ctx)
	u.mu.Unlock()
	u.kick()
}

// kick makes a step due now. It never blocks.
func (u *runner) kick() {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.stopped, u.ctx == nil:
	case u.stepping:
		u.again = true
	default:
		u.stepping = true
		go u.loop()
	}
}

// loop steps until no step is due, arming the timer for the next.
func (u *runner) loop() {
	for {
		var next time.Time
		if u.ctx.Err() == nil {
			next = u.step(u.ctx)
		}
		u.mu.Lock()
		if u.stopped {
			next = time.Time{}
		}
		u.armLocked(next)
		if u.again && !u.stopped {
			u.again = false
			u.mu.Unlock()
			continue
		}
		u.stepping = false
		if u.stopped {
			close(u.idle)
		}
		u.mu.Unlock()
		return
	}
}

// armLocked sets the timer for the next step (zero: none); mu must be
// held. (Neither clock calls a callback from Reset or Stop, so kick, which
// takes mu, never runs under it.)
func (u *runner) armLocked(next time.Time) {
	switch {
	case next.IsZero() && u.timer != nil:
		u.timer.Stop()
	case next.IsZero():
	case u.timer == nil:
		u.timer = u.clock.AfterFunc(next, u.kick)
	default:
		u.timer.Reset(next)
	}
}

// stop ends the runner (started or not), waits for a step in progress,
// and reports whether it had been started.
func (u *runner) stop() (started bool) {
	u.mu.Lock()
	started = u.ctx != nil
	if u.stopped {
		u.mu.Unlock()
		return started
	}
	u.stopped = true
	busy, cancel := u.stepping, u.cancel
	if !busy {
		u.armLocked(time.Time{})
	}
	u.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if busy {
		<-u.idle
	}
	return started
}

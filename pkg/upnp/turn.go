package upnp

import (
	"context"
	"sync"
)

// turn lets one of Run's steps or one Drain at a time do network I/O (and
// own the Manager's bookkeeping). A Drain goes first: it cuts a step under
// way short and no step starts while a Drain waits or works.
type turn struct {
	mu         sync.Mutex
	busy       bool
	drains     int                // Drains waiting for or holding the turn
	cancelStep context.CancelFunc // the step under way; nil when none
	free       chan struct{}      // closed, and replaced, when the turn is released
}

func newTurn() *turn { return &turn{free: make(chan struct{})} }

// forStep waits for the turn for one step of Run and returns the step's
// context (which a Drain may cancel) and the func that ends the turn. It
// fails when ctx ends first.
func (t *turn) forStep(ctx context.Context) (context.Context, func(), error) {
	for {
		t.mu.Lock()
		if !t.busy && t.drains == 0 {
			sctx, cancel := context.WithCancel(ctx)
			t.busy, t.cancelStep = true, cancel
			t.mu.Unlock()
			return sctx, func() { cancel(); t.end(false) }, nil
		}
		free := t.free
		t.mu.Unlock()
		select {
		case <-free:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// forDrain cuts the step under way short, waits for the turn and returns
// the func that ends it. It fails when ctx ends first.
func (t *turn) forDrain(ctx context.Context) (func(), error) {
	t.mu.Lock()
	t.drains++
	if t.cancelStep != nil {
		t.cancelStep()
	}
	for t.busy {
		free := t.free
		t.mu.Unlock()
		select {
		case <-free:
			t.mu.Lock()
		case <-ctx.Done():
			t.mu.Lock()
			t.drains--
			t.wakeLocked() // a step may go now
			t.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	t.busy = true
	t.mu.Unlock()
	return func() { t.end(true) }, nil
}

// end ends a turn and wakes those waiting for it.
func (t *turn) end(drain bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if drain {
		t.drains--
	}
	t.busy, t.cancelStep = false, nil
	t.wakeLocked()
}

func (t *turn) wakeLocked() {
	close(t.free)
	t.free = make(chan struct{})
}

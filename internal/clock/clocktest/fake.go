// Package clocktest is the hand-driven clock.Clock shared by vigil's tests.
// Time moves only when a test calls Set or Step; every timer and callback due
// then fires before Set returns, in deadline order.
package clocktest

import (
	"slices"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// State is the state of one fake timer.
type State int

const (
	Stopped State = iota // never armed, or Stop called
	Armed                // Reset (or AfterFunc) called, not fired yet
	Fired                // deadline reached: value sent on C, or callback called
)

func (s State) String() string {
	return [...]string{"stopped", "armed", "fired"}[s]
}

// TimerState is a snapshot of one timer.
type TimerState struct {
	At    time.Time // deadline of the last Reset
	State State
	Func  bool // made by AfterFunc
}

// Fake is a manual clock.Clock. It is safe for concurrent use.
type Fake struct {
	start time.Time

	mu      sync.Mutex
	now     time.Time
	seq     int
	setting int           // Sets in progress: they run due callbacks
	timers  []*fakeTimer  // in creation order; callbacks only while armed
	changed chan struct{} // closed and replaced on every change
	onReset func(at time.Time)
}

// New returns a fake clock that reads start until it is moved.
func New(start time.Time) *Fake {
	return &Fake{start: start, now: start, changed: make(chan struct{})}
}

var _ clock.Clock = (*Fake)(nil)

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Elapsed returns how far the clock has moved since New.
func (f *Fake) Elapsed() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now.Sub(f.start)
}

// NewTimer returns a stopped timer whose C has capacity 1.
func (f *Fake) NewTimer() clock.Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{clk: f, c: make(chan time.Time, 1)}
	f.add(t)
	return t
}

// AfterFunc arms a callback. It runs inside the Set or Step that reaches
// at; if at has passed already, at once in its own goroutine (as with
// time.AfterFunc), or, while a Set runs, in that Set.
func (f *Fake) AfterFunc(at time.Time, fn func()) clock.Timer {
	t := &fakeTimer{clk: f, fn: fn}
	t.Reset(at)
	return t
}

// OnReset registers fn to be called (outside the clock's lock) after every
// Reset of a NewTimer timer, e.g. so a test knows its loop finished a step.
func (f *Fake) OnReset(fn func(at time.Time)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onReset = fn
}

// Step moves the clock forward by d; see Set.
func (f *Fake) Step(d time.Duration) {
	f.Set(f.Now().Add(d))
}

// Set moves the clock to t (never backwards) and fires every timer due by
// then in deadline order: a value on C, or the callback called
// synchronously before Set returns. The clock reads t throughout. A
// callback armed while Set runs and due by t runs in the same Set.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	if t.After(f.now) {
		f.now = t
	}
	f.setting++
	f.signal()
	f.mu.Unlock()
	for {
		fn, ok := f.fireNext()
		if !ok {
			return
		}
		if fn != nil {
			fn()
		}
	}
}

// fireNext fires the earliest due timer and returns its callback, if any.
// With none left, it ends the Set: due callbacks armed from now on run at
// once.
func (f *Fake) fireNext() (func(), bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var due *fakeTimer
	for _, t := range f.timers {
		if t.state == Armed && !t.at.After(f.now) && (due == nil || t.before(due)) {
			due = t
		}
	}
	if due == nil {
		f.setting--
		return nil, false
	}
	return due.fireLocked(), true
}

// Timers returns the state of every channel timer and every armed
// callback, in creation order.
func (f *Fake) Timers() []TimerState {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]TimerState, 0, len(f.timers))
	for _, t := range f.timers {
		out = append(out, TimerState{At: t.at, State: t.state, Func: t.fn != nil})
	}
	return out
}

// StateOf returns the state of t, a timer of f (a callback that fired or
// was stopped stays Fired or Stopped).
func (f *Fake) StateOf(t clock.Timer) TimerState {
	ft := t.(*fakeTimer)
	f.mu.Lock()
	defer f.mu.Unlock()
	return TimerState{At: ft.at, State: ft.state, Func: ft.fn != nil}
}

// Pending returns the deadlines of the armed timers and callbacks, sorted.
func (f *Fake) Pending() []time.Time {
	var out []time.Time
	for _, t := range f.Timers() {
		if t.State == Armed {
			out = append(out, t.At)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// Changed returns a channel that is closed at the next change of the clock
// or of any timer. Take it before checking a condition, then wait on it.
func (f *Fake) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Await re-checks cond after every change until it holds, or until within
// (real time, a failsafe for broken tests) has passed; it reports whether
// cond held.
func (f *Fake) Await(within time.Duration, cond func() bool) bool {
	failsafe := time.After(within)
	for {
		ch := f.Changed()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-failsafe:
			return cond()
		}
	}
}

func (f *Fake) add(t *fakeTimer) {
	if t.seq == 0 {
		f.seq++
		t.seq = f.seq
	}
	f.timers = append(f.timers, t)
	f.signal()
}

func (f *Fake) remove(t *fakeTimer) {
	f.timers = slices.DeleteFunc(f.timers, func(u *fakeTimer) bool { return u == t })
}

func (f *Fake) signal() {
	close(f.changed)
	f.changed = make(chan struct{})
}

type fakeTimer struct {
	clk   *Fake
	seq   int
	c     chan time.Time // nil for callbacks
	fn    func()         // nil for channel timers
	at    time.Time
	state State
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

// before orders due timers: by deadline, then by the order they were made.
func (t *fakeTimer) before(u *fakeTimer) bool {
	return t.at.Before(u.at) || t.at.Equal(u.at) && t.seq < u.seq
}

func (t *fakeTimer) Reset(at time.Time) {
	f := t.clk
	f.mu.Lock()
	t.drainLocked()
	if t.fn != nil && t.state != Armed {
		f.add(t)
	}
	t.at, t.state = at, Armed
	var run func()
	if !at.After(f.now) && (t.fn == nil || f.setting == 0) {
		run = t.fireLocked()
	}
	f.signal()
	hook := f.onReset
	f.mu.Unlock()
	if run != nil {
		go run()
	}
	if hook != nil && t.fn == nil {
		hook(at)
	}
}

func (t *fakeTimer) Stop() {
	f := t.clk
	f.mu.Lock()
	defer f.mu.Unlock()
	t.drainLocked()
	if t.fn != nil && t.state == Armed {
		f.remove(t)
	}
	t.state = Stopped
	f.signal()
}

// fireLocked fires an armed timer: a channel timer gets the time on C, a
// callback is unlisted and returned for the caller to run unlocked.
func (t *fakeTimer) fireLocked() func() {
	f := t.clk
	t.state = Fired
	f.signal()
	if t.fn != nil {
		f.remove(t)
		return t.fn
	}
	t.c <- f.now
	return nil
}

func (t *fakeTimer) drainLocked() {
	if t.c == nil {
		return
	}
	select {
	case <-t.c:
	default:
	}
}

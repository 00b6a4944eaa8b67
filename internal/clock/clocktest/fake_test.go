package clocktest

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const failsafe = 10 * time.Second

func TestSetFiresDueTimersInDeadlineOrder(t *testing.T) {
	f := New(t0)
	var mu sync.Mutex
	var got []string
	record := func(s string) func() {
		return func() { mu.Lock(); got = append(got, s); mu.Unlock() }
	}
	f.AfterFunc(t0.Add(3*time.Second), record("3s"))
	f.AfterFunc(t0.Add(time.Second), record("1s"))
	stopped := f.AfterFunc(t0.Add(2*time.Second), record("stopped"))
	stopped.Stop()
	// A callback that arms another one already due is followed in the same Set.
	f.AfterFunc(t0.Add(2*time.Second), func() {
		record("2s")()
		f.AfterFunc(t0.Add(2500*time.Millisecond), record("2.5s armed by 2s"))
	})
	f.AfterFunc(t0.Add(10*time.Second), record("10s"))
	timer := f.NewTimer()
	timer.Reset(t0.Add(4 * time.Second))

	f.Step(5 * time.Second)

	want := []string{"1s", "2s", "2.5s armed by 2s", "3s"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("callbacks (-want +got):\n%s", diff)
	}
	select {
	case at := <-timer.C():
		if !at.Equal(t0.Add(5 * time.Second)) {
			t.Errorf("timer sent %v, want the time it fired at", at.Sub(t0))
		}
	default:
		t.Error("timer due at 4s did not fire at 5s")
	}
	if diff := cmp.Diff([]time.Time{t0.Add(10 * time.Second)}, f.Pending()); diff != "" {
		t.Errorf("Pending (-want +got):\n%s", diff)
	}
}

func TestTimerResetAndStopDiscardStaleValues(t *testing.T) {
	f := New(t0)
	timer := f.NewTimer()
	timer.Reset(t0) // already due: fires at once
	timer.Reset(t0.Add(time.Second))
	select {
	case <-timer.C():
		t.Fatal("stale value received after Reset")
	default:
	}
	f.Set(t0.Add(time.Second))
	timer.Stop()
	select {
	case <-timer.C():
		t.Fatal("stale value received after Stop")
	default:
	}
	f.Set(t0) // never backwards
	if got := f.Elapsed(); got != time.Second {
		t.Errorf("Elapsed = %v after setting the clock back, want 1s", got)
	}
	want := []TimerState{{At: t0.Add(time.Second), State: Stopped}}
	if diff := cmp.Diff(want, f.Timers()); diff != "" {
		t.Errorf("Timers (-want +got):\n%s", diff)
	}
}

func TestAfterFuncAlreadyDueRunsAtOnce(t *testing.T) {
	f := New(t0)
	ran := make(chan struct{})
	f.AfterFunc(t0.Add(-time.Second), func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(failsafe):
		t.Fatal("callback due in the past never ran")
	}
}

func TestAwaitWakesOnChange(t *testing.T) {
	f := New(t0)
	go f.Step(time.Minute)
	if !f.Await(failsafe, func() bool { return f.Elapsed() == time.Minute }) {
		t.Fatal("Await did not see the clock move")
	}
	if f.Await(10*time.Millisecond, func() bool { return false }) {
		t.Fatal("Await reported a condition that never held")
	}
}

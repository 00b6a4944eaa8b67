package election

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

// A kick during a step runs one more step after it, however many kicks
// came; steps never overlap.
func TestRunnerKicksDuringAStepRunItOnceMore(t *testing.T) {
	clk := clocktest.New(t0)
	entered, release := make(chan struct{}, 10), make(chan struct{})
	var steps, running atomic.Int32
	u := newRunner(clk, func(context.Context) time.Time {
		if running.Add(1) != 1 {
			t.Error("two steps at once")
		}
		defer running.Add(-1)
		steps.Add(1)
		entered <- struct{}{}
		<-release
		return time.Time{}
	})
	u.kick() // before start: nothing
	u.start(context.Background())
	t.Cleanup(func() { u.stop() })
	waitClosed(t, entered, "the first step") // one receive
	u.kick()
	u.kick()
	u.kick()
	release <- struct{}{}
	<-entered
	close(release)
	waitIdle(t, u)
	if got := steps.Load(); got != 2 {
		t.Errorf("%d steps, want 2 (the first, and one for the kicks during it)", got)
	}
}

// A step runs again at the time the last one asked for, and only then.
func TestRunnerStepsAtTheTimeAsked(t *testing.T) {
	clk := clocktest.New(t0)
	var steps atomic.Int32
	u := newRunner(clk, func(context.Context) time.Time {
		if steps.Add(1) == 1 {
			return t0.Add(time.Second)
		}
		return time.Time{}
	})
	u.start(context.Background())
	t.Cleanup(func() { u.stop() })
	if !clk.Await(failsafe, func() bool {
		s, _ := u.timerState(clk)
		return s.State == clocktest.Armed
	}) {
		t.Fatal("no timer armed after the first step")
	}
	clk.Set(t0.Add(999 * time.Millisecond))
	if got := steps.Load(); got != 1 {
		t.Fatalf("%d steps before the time asked, want 1", got)
	}
	clk.Set(t0.Add(time.Second))
	waitIdle(t, u)
	if got := steps.Load(); got != 2 {
		t.Errorf("%d steps, want 2", got)
	}
}

// stop cancels the step's context, waits for it, and nothing steps after.
func TestRunnerStopWaitsForTheStep(t *testing.T) {
	clk := clocktest.New(t0)
	entered := make(chan struct{})
	var steps atomic.Int32
	u := newRunner(clk, func(ctx context.Context) time.Time {
		if steps.Add(1) == 1 {
			close(entered)
			<-ctx.Done()
		}
		return clk.Now() // due again at once, unless stopped
	})
	u.start(context.Background())
	waitClosed(t, entered, "the first step")
	stopped := make(chan struct{})
	go func() {
		u.stop()
		close(stopped)
	}()
	waitClosed(t, stopped, "stop")
	u.kick()
	u.start(context.Background())
	if got := steps.Load(); got != 1 {
		t.Errorf("%d steps, want 1: nothing steps after stop", got)
	}
	if s, _ := u.timerState(clk); s.State == clocktest.Armed {
		t.Error("timer armed after stop")
	}
}

// Races waiting for their Lease's expiry or the informer cost no
// goroutine: 80 candidacies (the fake clientset's watch holds 100
// events), every Lease held by this node, park with the goroutine count
// of an elector with none.
func TestWaitingRacesHaveNoGoroutine(t *testing.T) {
	a := newAPIServer(t)
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	n.start()
	base := runtime.NumGoroutine()
	const races = 80
	for i := range races {
		n.e.Campaign(Key{Namespace: "default", Name: fmt.Sprintf("kubevip-svc%d", i)})
	}
	n.waitFor("every race leading and parked until its renewal", func() bool {
		ts := n.raceTimers()
		if len(ts) != races {
			return false
		}
		for _, s := range ts {
			if s.State != clocktest.Armed {
				return false
			}
		}
		n.e.mu.Lock()
		defer n.e.mu.Unlock()
		return n.e.held == races
	})
	if extra := runtime.NumGoroutine() - base; extra > 8 {
		t.Errorf("%d more goroutines with %d parked races, want none per race", extra, races)
	}
}

// waitIdle waits until no step runs (polled every millisecond: nothing
// signals it).
func waitIdle(t *testing.T, u *runner) {
	t.Helper()
	giveUp := time.After(failsafe)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		u.mu.Lock()
		stepping := u.stepping
		u.mu.Unlock()
		if !stepping {
			return
		}
		select {
		case <-tick.C:
		case <-giveUp:
			t.Fatal("runner still stepping")
		}
	}
}

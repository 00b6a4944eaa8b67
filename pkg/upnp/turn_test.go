package upnp

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func within(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen", what)
	}
}

// notYet fails if ch is closed once every goroutine of the synctest
// bubble is blocked.
func notYet(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	synctest.Wait()
	select {
	case <-ch:
		t.Fatalf("%s happened too early", what)
	default:
	}
}

// A Drain cuts the step under way short and gets the turn when it ends.
func TestTurnDrainCutsStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTurn()
		sctx, endStep, err := tn.forStep(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan struct{})
		var endDrain func()
		go func() {
			endDrain, _ = tn.forDrain(context.Background())
			close(got)
		}()
		within(t, "the step's context ending", sctx.Done())
		notYet(t, "the Drain's turn before the step ended", got)
		endStep()
		within(t, "the Drain's turn", got)
		endDrain()
	})
}

// No step starts while a Drain waits, not even the next step of a Run
// that loops straight back for the turn.
func TestTurnDrainsGoFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTurn()
		_, endStep, err := tn.forStep(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		drained, stepped := make(chan struct{}), make(chan struct{})
		var endDrain, endNext func()
		go func() {
			endDrain, _ = tn.forDrain(context.Background())
			close(drained)
		}()
		synctest.Wait() // the Drain waits for the turn
		// Run's loop: the step ends and it asks for the turn again at once.
		go func() {
			endStep()
			_, endNext, _ = tn.forStep(context.Background())
			close(stepped)
		}()
		within(t, "the Drain's turn", drained)
		notYet(t, "the next step while the Drain holds the turn", stepped)
		endDrain()
		within(t, "the next step's turn", stepped)
		endNext()
	})
}

// Waiting for the turn ends with the context; a step may go then.
func TestTurnDrainGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTurn()
		_, endStep, err := tn.forStep(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		failed := make(chan error, 1)
		go func() {
			_, err := tn.forDrain(ctx)
			failed <- err
		}()
		synctest.Wait() // the Drain waits for the turn
		cancel()
		if err := <-failed; !errors.Is(err, context.Canceled) {
			t.Errorf("forDrain = %v, want context.Canceled", err)
		}
		endStep()
		stepCtx, cancelStep := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelStep()
		if _, end, err := tn.forStep(stepCtx); err != nil {
			t.Errorf("the next step: %v", err)
		} else {
			end()
		}
	})
}

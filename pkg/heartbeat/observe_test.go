package heartbeat

import (
	"log/slog"
	"testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
)

// The informer's event for our own accepted write confirms the hold and
// notifies at once, without waiting for a step: after a busy node dies,
// the steps queue behind hundreds of takeover writes.
func TestInformerConfirmsOwnWrite(t *testing.T) {
	tests := []struct {
		name        string
		rv          string // of the record the informer shows
		wantConfirm bool
	}{
		{"our write", "7", true},
		{"an earlier record", "6", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPI(t)
			notified := 0
			e, err := New(Config{Identity: "node1", Instance: "boot1", NodeNamespace: ns, Clock: clocktest.New(t0)},
				kubeclienttest.Wrap(a.clientset()), func(election.Key) { notified++ }, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			key := election.Key{Namespace: "default", Name: "kubevip-web"}
			e.cands[key] = &cand{held: true, rv: "7"}
			l := e.svcRecord(key, nil, t0)
			l.ResourceVersion = tt.rv
			e.observe(l, false)
			if got := e.cands[key].confirmed; got != tt.wantConfirm {
				t.Errorf("confirmed %v, want %v", got, tt.wantConfirm)
			}
			if notified != 1 { // the holder changed (first sighting) either way
				t.Errorf("notified %d times, want 1", notified)
			}
		})
	}
}

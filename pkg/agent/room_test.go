package agent

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/plan"
)

// A Service whose Lease waits for room on a full node says so in its
// condition, with one Warning Event, written by the node ranked first
// among its candidates only; once someone else holds it, or this node
// leads it, the wait is no longer told.
func TestWaitingForRoomStatus(t *testing.T) {
	first, second := serviceRanked(nodeA, nodeB), serviceRanked(nodeB, nodeA)
	tests := []struct {
		name, svc   string
		waiting     bool
		heldByOther bool
		wantReason  string // of the condition ("": none written)
		wantEvents  []string
	}{
		{name: "ranked first, waiting", svc: first, waiting: true, wantReason: plan.ReasonElectionFull, wantEvents: []string{"Warning ElectionFull"}},
		{name: "ranked second, waiting", svc: second, waiting: true},
		{name: "ranked first, not waiting", svc: first},
		{name: "ranked first, waiting, but another node holds it", svc: first, waiting: true, heldByOther: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "default/" + tt.svc
			objs := append(withEndpoints(service(tt.svc, vip10), nodeA, nodeB), runtime.Object(node(nodeA)), node(nodeB))
			f := newFixture(t, defaultConfig(), objs...)
			f.el.waiting = map[election.Key]bool{lease(key): tt.waiting}
			f.el.heldByOther[lease(key)] = tt.heldByOther
			for range 2 { // told once, not on every sync
				f.mustSync(key)
				f.flushStatus()
			}
			reason := ""
			if c := f.condition(key); c != nil {
				reason = c.Reason
			}
			if reason != tt.wantReason {
				t.Errorf("condition reason %q, want %q", reason, tt.wantReason)
			}
			if diff := cmp.Diff(tt.wantEvents, f.events()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if !tt.waiting || tt.wantReason == "" {
				return
			}
			f.el.waiting[lease(key)] = false
			f.el.leading[lease(key)] = true
			f.mustSync(key)
			f.flushStatus()
			if c := f.condition(key); c == nil || c.Reason != "Announced" {
				t.Errorf("once led: condition %+v, want Announced", c)
			}
		})
	}
}

// serviceRanked names a Service whose Lease a outranks b for.
func serviceRanked(a, b string) string {
	for i := 0; ; i++ {
		name := fmt.Sprintf("web%d", i)
		if election.Outranks(lease("default/"+name), a, b) {
			return name
		}
	}
}

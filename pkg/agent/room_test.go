package agent

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/vigil-lb/vigil/pkg/election"
)

// A Service whose Lease waits for room on a full node gets one Warning
// Event, from the node ranked first among its candidates only; once it is
// led, a later wait is told again.
func TestSayWaiting(t *testing.T) {
	first, second := serviceRanked(nodeA, nodeB), serviceRanked(nodeB, nodeA)
	tests := []struct {
		name, svc string
		waiting   bool
		want      []string
	}{
		{name: "ranked first, waiting", svc: first, waiting: true, want: []string{"Warning ElectionFull"}},
		{name: "ranked second, waiting", svc: second, waiting: true},
		{name: "ranked first, not waiting", svc: first},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "default/" + tt.svc
			objs := append(withEndpoints(service(tt.svc, vip10), nodeA, nodeB), runtime.Object(node(nodeA)), node(nodeB))
			f := newFixture(t, defaultConfig(), objs...)
			f.el.waiting = map[election.Key]bool{lease(key): tt.waiting}
			f.mustSync(key)
			f.mustSync(key) // once, not every sync
			if diff := cmp.Diff(tt.want, f.events()); diff != "" {
				t.Fatalf("events (-want +got):\n%s", diff)
			}
			if !tt.waiting {
				return
			}
			f.el.waiting[lease(key)] = false
			f.el.leading[lease(key)] = true
			f.mustSync(key)
			f.events()
			f.el.waiting[lease(key)] = true
			f.el.leading[lease(key)] = false
			f.mustSync(key)
			if diff := cmp.Diff(tt.want, electionFull(f.events())); diff != "" {
				t.Errorf("a second wait, after being led: events (-want +got):\n%s", diff)
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

func electionFull(events []string) []string {
	var out []string
	for _, e := range events {
		if e == "Warning ElectionFull" {
			out = append(out, e)
		}
	}
	return out
}

package election

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

// advance moves the fake clock to at in RetryPeriod (1 s) steps, letting
// the race take each step.
func (n *node) advance(to time.Duration) {
	n.t.Helper()
	for at := n.clk.Elapsed() + time.Second; at <= to; at += time.Second {
		n.clk.Set(t0.Add(at))
		n.waitFor("the race to step at +"+at.String(), func() bool {
			ts := n.raceTimers()
			return len(ts) == 1 && ts[0].At.After(t0.Add(at))
		})
	}
}

// A Lease kube-vip holds (no vigil label: the informer never shows it) is
// read by GET, kept by its holder while it renews, and taken over by an
// update once it expired by this node's own observation.
func TestForeignLeaseExpires(t *testing.T) {
	a := newAPIServer(t)
	a.holdForeign(web, "node2", t0.Add(-time.Hour))
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	n.start()
	n.e.Campaign(web)
	n.advance(3 * time.Second)
	a.holdForeign(web, "node2", t0.Add(3*time.Second)) // kube-vip renews
	n.advance(7 * time.Second)
	if n.e.Leading(web) || n.writes() != 1 {
		t.Fatalf("leading %t after %d writes while kube-vip renews", n.e.Leading(web), n.writes())
	}
	n.advance(9 * time.Second) // renewal seen at +4s at the latest: expired by +9s
	n.waitFor("taking over kube-vip's expired lease", func() bool { return n.e.Leading(web) })
	l := a.get(web)
	if l.Labels[ManagedByLabel] != ManagedByValue || l.Annotations[InstanceAnnotation] != "boot-1" || *l.Spec.HolderIdentity != "node1" {
		t.Errorf("lease after takeover: labels %v annotations %v holder %s", l.Labels, l.Annotations, *l.Spec.HolderIdentity)
	}
	if tr := a.transitions(web); tr != 1 {
		t.Errorf("leaseTransitions = %d, want 1", tr)
	}
}

// campaignOverForeign runs node1 campaigning for web, which kube-vip on
// node2 holds (renewed at t0), up to +1s.
func campaignOverForeign(t *testing.T) (*apiServer, *node) {
	t.Helper()
	a := newAPIServer(t)
	a.holdForeign(web, "node2", t0)
	n := newNode(t, a, clocktest.New(t0), "node1", "boot-1")
	n.start()
	n.e.Campaign(web)
	n.advance(time.Second)
	return a, n
}

// A foreign Lease is read once per RetryPeriod, not in a loop (its read
// used to wake its own race, which read it again at once: thousands of GETs
// a second while kube-vip held the Lease).
func TestForeignLeaseReadOncePerRetryPeriod(t *testing.T) {
	_, n := campaignOverForeign(t)
	gets := func() int {
		return len(slices.DeleteFunc(n.cs.Actions(), func(a k8stesting.Action) bool {
			return a.GetResource() != leasesGVR || a.GetVerb() != "get"
		}))
	}
	before := gets()
	n.advance(4 * time.Second)
	if got := gets() - before; got != 3 {
		t.Errorf("%d GETs over three RetryPeriods, want 3", got)
	}
}

// kube-vip releases its Lease before it removes the address: a release by
// a foreign holder is taken only RenewDeadline (3 s) after it was seen.
func TestForeignLeaseReleased(t *testing.T) {
	a, n := campaignOverForeign(t)
	a.holdForeign(web, "", t0.Add(time.Second)) // released at +1s, seen at +2s
	n.advance(4 * time.Second)
	if n.e.Leading(web) {
		t.Fatal("took a foreign release at once: kube-vip may still answer for the address")
	}
	n.advance(5 * time.Second)
	n.waitFor("taking over the released lease", func() bool { return n.e.Leading(web) })
}

// With Config.Silent, a foreign Lease free by every other rule is taken
// only once its addresses stop answering.
func TestForeignLeaseWaitsForSilence(t *testing.T) {
	a := newAPIServer(t)
	a.holdForeign(web, "node2", t0)
	clk := clocktest.New(t0)
	var mu sync.Mutex
	answering := true
	n := newNodeWith(t, a, clk, Config{Identity: "node1", Instance: "boot-1", Clock: clk,
		Silent: func(_ context.Context, k Key) bool {
			mu.Lock()
			defer mu.Unlock()
			return k != web || !answering
		}})
	n.start()
	n.e.Campaign(web)
	n.advance(8 * time.Second) // expired at +5s, but still answered
	if n.e.Leading(web) {
		t.Fatal("took a foreign lease whose address still answers")
	}
	mu.Lock()
	answering = false
	mu.Unlock()
	n.advance(9 * time.Second)
	n.waitFor("taking over once silent", func() bool { return n.e.Leading(web) })
}

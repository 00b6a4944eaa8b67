package election

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

// keyTopped returns a key for which first outranks every one of others.
func keyTopped(first string, others ...string) Key {
	for i := 0; ; i++ {
		k := Key{Namespace: "default", Name: fmt.Sprintf("kubevip-h%d", i)}
		top := true
		for _, o := range others {
			top = top && Rendezvous(k, first) > Rendezvous(k, o)
		}
		if top {
			return k
		}
	}
}

// Successor names the node that would take a held Lease at rank 0: a live
// node ranked first. Not this node, not one known only from Config.Peers,
// not a Lease this node does not lead, not after renewals stopped landing.
func TestSuccessor(t *testing.T) {
	a := newAPIServer(t)
	clk := clocktest.New(t0)
	var mu sync.Mutex
	var peers []string
	n1 := spreadNode(t, a, clk, "node1", func(c *Config) {
		c.RankDelay = 100 * time.Millisecond
		c.Peers = func() []string { mu.Lock(); defer mu.Unlock(); return peers }
	})
	n1.start()
	toNode2 := keyTopped("node2", "node1", "node3")
	stays := keyTopped("node1", "node2", "node3")
	toNode3 := keyTopped("node3", "node1", "node2")
	for _, k := range []Key{toNode2, stays, toNode3} {
		n1.lead(k) // alone: rank 0 for every key
	}
	// node2's agent runs (it holds a Lease); node3 is only a Node.
	a.hold(Key{"default", "kubevip-x2"}, "node2", "node2-boot", t0)
	mu.Lock()
	peers = []string{"node1", "node2", "node3"}
	mu.Unlock()
	n1.waitObserved(Key{"default", "kubevip-x2"})
	clk.Step(100 * time.Millisecond) // the ranked peers are looked at again
	if to, ok := n1.e.Successor(toNode2); ok {
		t.Errorf("Successor = %s while node2 is seen alive for only 100ms", to)
	}
	// node2 renews; a LeaseDuration later it counts as settled.
	advance(n1, clk, t0.Add(6*time.Second), func() {
		a.hold(Key{"default", "kubevip-x2"}, "node2", "node2-boot", clk.Now()) // node2 renews
	})

	type got struct {
		Node string
		OK   bool
	}
	check := func(when string, want map[Key]got) {
		t.Helper()
		out := map[Key]got{}
		for k := range want {
			node, ok := n1.e.Successor(k)
			out[k] = got{node, ok}
		}
		if diff := cmp.Diff(want, out); diff != "" {
			t.Errorf("%s: Successor (-want +got):\n%s", when, diff)
		}
	}
	notHeld := Key{"default", "kubevip-not-held"}
	check("renewals landing", map[Key]got{
		toNode2: {"node2", true},
		stays:   {"", false}, // node1 ranks first
		toNode3: {"", false}, // node3 runs no agent that this node sees
		notHeld: {"", false},
	})

	n1.cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errFake
	})
	clk.Set(t0.Add(8100 * time.Millisecond)) // renewals at 7s and 8s fail
	n1.waitFor("renewals failed", func() bool { return !n1.e.renewFailedAt().IsZero() })
	if !n1.e.Leading(toNode2) {
		t.Fatal("node1 no longer leads before its renew deadline")
	}
	check("last renewal 2.1s ago", map[Key]got{toNode2: {"", false}})
}

// advance moves the clock to until in 100 ms steps, calling each after
// every step, and at every whole second after t0 (until is one) waits for
// the renewals due then to be sent before stepping on: a renewal the busy
// machine sent after a later step would carry that step's time, and every
// renewal after it would drift off the whole seconds.
func advance(n *node, clk *clocktest.Fake, until time.Time, each func()) {
	n.t.Helper()
	for clk.Now().Before(until) {
		clk.Step(100 * time.Millisecond)
		each()
		time.Sleep(2 * time.Millisecond) // the watch delivers what each wrote
		if now := clk.Now(); now.Sub(t0)%time.Second == 0 {
			n.waitRenewedAt(now)
		}
	}
}

// waitRenewedAt waits until every Lease n holds was last renewed by a
// request sent at at.
func (n *node) waitRenewedAt(at time.Time) {
	n.t.Helper()
	n.waitFor("renewals at "+at.Sub(t0).String(), func() bool {
		n.e.mu.Lock()
		defer n.e.mu.Unlock()
		for _, r := range n.e.races {
			if r.held && !r.term.Deadline.Equal(at.Add(n.e.cfg.RenewDeadline)) {
				return false
			}
		}
		return true
	})
}

// A Lease handed over goes to the Successor at once: released, it is free
// to the node ranked first with no rank delay, while the node that
// released it, campaigning again, ranks below.
func TestHandoverToSuccessorAtOnce(t *testing.T) {
	a := newAPIServer(t)
	clk := clocktest.New(t0)
	rank := func(c *Config) { c.RankDelay = 100 * time.Millisecond }
	n1 := spreadNode(t, a, clk, "node1", rank)
	n1.start()
	key := keyTopped("node2", "node1")
	n1.lead(key)
	n2 := spreadNode(t, a, clk, "node2", rank)
	a.hold(Key{"default", "kubevip-x2"}, "node2", "node2-boot", t0) // node2 runs
	n2.start()
	n2.e.Campaign(key)
	n1.waitObserved(Key{"default", "kubevip-x2"})
	clk.Step(100 * time.Millisecond)
	n1.e.Successor(key) // node2 seen alive from here
	advance(n1, clk, t0.Add(6*time.Second), func() {
		a.hold(Key{"default", "kubevip-x2"}, "node2", "node2-boot", clk.Now()) // node2 renews
	})
	if to, ok := n1.e.Successor(key); !ok || to != "node2" {
		t.Fatalf("Successor = %q, %v; want node2", to, ok)
	}
	if err := n1.e.Resign(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	n1.e.Campaign(key)
	n2.waitFor("node2 leading", func() bool { return n2.e.Leading(key) })
	if h, _ := a.holder(key); h != "node2" {
		t.Errorf("holder %s, want node2", h)
	}
	if e := clk.Elapsed(); e != 6*time.Second {
		t.Errorf("the clock moved %v past the handover: the successor must not wait", e-6*time.Second)
	}
}

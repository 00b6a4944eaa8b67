package heartbeat

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/election"
)

// keyRanked returns a Service key the nodes rank in the order given, the
// n-th such key (to get several).
func keyRanked(n int, order ...string) election.Key {
	for i := 0; ; i++ {
		k := election.Key{Namespace: "default", Name: fmt.Sprintf("kubevip-h%d", i)}
		ok := true
		for j := 1; j < len(order); j++ {
			ok = ok && score(k, order[j-1]) > score(k, order[j])
		}
		if ok && n == 0 {
			return k
		}
		if ok {
			n--
		}
	}
}

// Successor names the live node of this mode ranked first for a Service
// this node leads on a fresh heartbeat; a released Service goes to it at
// once.
func TestSuccessorAndHandover(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	toNode2 := keyRanked(0, "node2", "node1")
	toNode2b := keyRanked(1, "node2", "node1")
	stays := keyRanked(0, "node1", "node2")
	toNode3 := keyRanked(0, "node3", "node1", "node2")
	n1 := newNode(t, a, clk, "node1", "i1")
	for _, k := range []election.Key{toNode2, toNode2b, stays, toNode3} {
		n1.e.Campaign(k)
	}
	n1.start()
	for _, k := range []election.Key{toNode2, toNode2b, stays, toNode3} {
		n1.waitFor("node1 leading "+k.Name, func() bool { return n1.e.Leading(k) })
	}
	// node3's agent runs per-Service mode: not a node of this mode.
	a.put(ns, NodeLeaseName("node3"), "node3", "k", "", "", t0)
	n2 := newNode(t, a, clk, "node2", "i2")
	n2.e.Campaign(toNode2)
	n2.start()
	n1.waitNodeSeen("node2")
	n1.waitNodeSeen("node3")
	if to, ok := n1.e.Successor(toNode2); ok {
		t.Errorf("Successor = %s while node2 has just started", to)
	}
	// Both heartbeat; a LeaseDuration later node2 counts as settled.
	for clk.Now().Before(t0.Add(6 * time.Second)) {
		clk.Step(100 * time.Millisecond)
		time.Sleep(2 * time.Millisecond)
	}
	n1.waitFor("node1's heartbeat after 5s", func() bool { return n1.lastBeat().After(t0.Add(5 * time.Second)) })
	n2.waitFor("node2's heartbeat after 5s", func() bool { return n2.lastBeat().After(t0.Add(5 * time.Second)) })
	beat := n1.lastBeat()

	type got struct {
		Node string
		OK   bool
	}
	successors := func(keys ...election.Key) map[election.Key]got {
		out := map[election.Key]got{}
		for _, k := range keys {
			node, ok := n1.e.Successor(k)
			out[k] = got{node, ok}
		}
		return out
	}
	want := map[election.Key]got{toNode2: {"node2", true}, toNode2b: {"node2", true}, stays: {}, toNode3: {}, web: {}}
	if diff := cmp.Diff(want, successors(toNode2, toNode2b, stays, toNode3, web)); diff != "" {
		t.Errorf("Successor (-want +got):\n%s", diff)
	}

	if err := n1.e.Resign(context.Background(), toNode2); err != nil {
		t.Fatal(err)
	}
	n1.e.Campaign(toNode2)
	n2.waitFor("node2 leading", func() bool { return n2.e.Leading(toNode2) })
	if e := clk.Elapsed() - 6*time.Second; e != 0 {
		t.Errorf("the handover waited %v: the successor ranks first, with no delay", e)
	}

	// Heartbeats stop landing: no handover on a stale term.
	n1.cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, fmt.Errorf("injected")
	})
	clk.Set(beat.Add(2100 * time.Millisecond))
	settle()
	if !n1.e.Leading(toNode2b) {
		t.Fatal("node1 no longer leads before its heartbeat deadline")
	}
	if diff := cmp.Diff(map[election.Key]got{toNode2b: {}}, successors(toNode2b)); diff != "" {
		t.Errorf("Successor on a 2.1 s old heartbeat (-want +got):\n%s", diff)
	}
}

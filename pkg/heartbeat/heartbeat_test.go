package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/election"
)

// score is the rendezvous weight of (key, node).
func score(key election.Key, node string) uint64 { return election.Rendezvous(key, node) }

func svc(i int) election.Key {
	return election.Key{Namespace: "default", Name: fmt.Sprintf("kubevip-s%d", i)}
}

// The steady cost: one node Lease renewed every LeaseDuration/3, Service
// Leases written once (on acquisition), never renewed.
func TestServiceLeasesWrittenOnlyOnOwnershipChange(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	n := newNode(t, a, clk, "node1", "i1", func(c *Config) {
		c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 3*time.Second, 2*time.Second, 1500*time.Millisecond
	})
	for i := range 3 {
		n.e.Campaign(svc(i))
	}
	n.start()
	for i := range 3 {
		n.waitFor("leading", func() bool { return n.e.Leading(svc(i)) })
	}
	for range 15 { // 5 lease durations of 3s
		clk.Step(time.Second)
		n.waitFor("heartbeat accepted", func() bool { return n.lastBeat().Equal(clk.Now()) })
	}
	settle()
	if got := n.writes("kubevip-"); got != 3 {
		t.Errorf("%d Service Lease writes over 5 lease durations, want 3 (the acquisitions)", got)
	}
	// The first heartbeat, then one per LeaseDuration/3.
	if got := n.writes(NodeLeasePrefix); got != 16 {
		t.Errorf("%d node Lease writes over 5 lease durations, want 16 (every LeaseDuration/3 = 1s)", got)
	}
	for i := range 3 {
		if !n.e.Leading(svc(i)) {
			t.Errorf("not leading %v after renewing only the node Lease", svc(i))
		}
	}
	l := a.get(ns, NodeLeaseName("node1"))
	want := map[string]string{election.InstanceAnnotation: "i1", ModeAnnotation: "node", DurationsAnnotation: "3s/2s/1.5s"}
	if diff := cmp.Diff(want, l.Annotations); diff != "" {
		t.Errorf("node Lease annotations (-want +got):\n%s", diff)
	}
}

// The node Lease is renewed every Interval (LeaseDuration/3 by default); a
// failed heartbeat is tried again a RetryPeriod later, before the renew
// deadline, and the cadence goes back to Interval once one is accepted.
func TestHeartbeatCadence(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	n := newNode(t, a, clk, "node1", "i1", func(c *Config) {
		c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 6*time.Second, 4*time.Second, time.Second
	})
	n.start()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	beatAt := func(d time.Duration) {
		t.Helper()
		clk.Set(at(d - time.Millisecond))
		settle()
		if got := n.lastBeat(); !got.Before(at(d)) {
			t.Fatalf("a heartbeat accepted at +%v, before +%v", got.Sub(t0), d)
		}
		clk.Set(at(d))
		n.waitFor("the heartbeat of +"+d.String(), func() bool { return n.lastBeat().Equal(at(d)) })
	}
	n.waitFor("the first heartbeat", func() bool { return n.lastBeat().Equal(t0) })
	beatAt(2 * time.Second) // LeaseDuration/3

	fail := failBeats(n, "node1")
	before := n.writes(NodeLeasePrefix)
	clk.Set(at(4 * time.Second))
	n.waitFor("the failed heartbeat of +4s", func() bool { return n.writes(NodeLeasePrefix) == before+1 })
	fail.Store(false)
	beatAt(5 * time.Second) // a RetryPeriod after the failure
	beatAt(7 * time.Second) // an Interval again
	if got := n.writes(NodeLeasePrefix); got != before+3 {
		t.Errorf("%d heartbeat writes from +4s to +7s, want 3", got-before)
	}
}

// A holder leads until its last accepted heartbeat's send time +
// RenewDeadline, and the Term says so.
func TestHolderStopsAtHeartbeatDeadline(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	n := newNode(t, a, clk, "node1", "i1")
	n.e.Campaign(web)
	n.start()
	n.waitFor("leading", func() bool { return n.e.Leading(web) })
	term, _ := n.e.Term(web)
	if diff := cmp.Diff(election.Term{Deadline: t0.Add(3 * time.Second), Expiry: t0.Add(5 * time.Second)}, term); diff != "" {
		t.Errorf("term (-want +got):\n%s", diff)
	}
	n.cs.PrependReactor("update", "leases", func(ac k8stesting.Action) (bool, runtime.Object, error) {
		if ac.(k8stesting.UpdateAction).GetObject().(metav1.Object).GetName() == NodeLeaseName("node1") {
			return true, nil, apierrors.NewServiceUnavailable("down")
		}
		return false, nil, nil
	})
	clk.Step(2999 * time.Millisecond)
	if !n.e.Leading(web) {
		t.Error("stopped leading before the deadline")
	}
	clk.Step(time.Millisecond)
	if n.e.Leading(web) {
		t.Error("still leading at last heartbeat + RenewDeadline")
	}
}

// A holder stops at once when its Service Lease names another holder.
func TestHolderStopsWhenLeaseNamesAnother(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	n := newNode(t, a, clk, "node1", "i1")
	n.e.Campaign(web)
	n.start()
	n.waitFor("leading", func() bool { return n.e.Leading(web) })
	a.put(web.Namespace, web.Name, "node2", "j1", Mode, "", clk.Now())
	n.waitFor("stepping down", func() bool { return !n.e.Leading(web) })
}

// A follower takes over only once the holder's node Lease has been
// unchanged for LeaseDuration by its own observation, and the fresh GET
// still shows it.
func TestTakeoverAfterHolderNodeLeaseExpires(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	n1 := newNode(t, a, clk, "node1", "i1")
	n1.e.Campaign(web)
	n1.start()
	n1.waitFor("node1 leading", func() bool { return n1.e.Leading(web) })
	n2 := newNode(t, a, clk, "node2", "i2")
	n2.e.Campaign(web)
	n2.start()
	n2.waitFor("node2's heartbeat", func() bool { return a.get(ns, NodeLeaseName("node2")) != nil })
	n1.stop() // crash: nothing released
	crashed := clk.Now()
	clk.Step(4900 * time.Millisecond)
	settle()
	if h, _ := a.holder(web); h != "node1" {
		t.Fatalf("holder %s before node1's node Lease expired", h)
	}
	clk.Set(crashed.Add(5 * time.Second))
	n2.waitFor("node2 leading", func() bool { return n2.e.Leading(web) })
	gets := 0
	for _, ac := range n2.cs.Actions() {
		if ac.GetVerb() == "get" && ac.(k8stesting.GetAction).GetName() == NodeLeaseName("node1") {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("%d GETs of node1's node Lease before the takeover, want 1", gets)
	}
}

// node1HoldsWeb is an API where node1 (instance i1) holds web and last
// heartbeated at t0, and node2 (not started) beside it.
func node1HoldsWeb(t *testing.T) (*api, *clocktest.Fake, *node) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	a.put(web.Namespace, web.Name, "node1", "i1", Mode, "", t0)
	a.put(ns, NodeLeaseName("node1"), "node1", "i1", Mode, "5s/3s/1s", t0)
	return a, clk, newNode(t, a, clk, "node2", "i2")
}

// waitNodeSeen waits until n has a record of node's heartbeat Lease.
func (n *node) waitNodeSeen(node string) {
	n.t.Helper()
	n.waitFor(node+"'s node Lease observed", func() bool {
		n.e.mu.Lock()
		defer n.e.mu.Unlock()
		return n.e.nodes[node] != nil
	})
}

// A follower whose watch missed the holder's heartbeats must not take over:
// the fresh GET shows a newer record, which is observed as of now.
func TestStalledWatchDoesNotTakeOver(t *testing.T) {
	a, clk, n2 := node1HoldsWeb(t)
	var mu sync.Mutex
	renew := t0
	// node1 heartbeats, but node2's watch never shows it: only GET does.
	n2.cs.PrependReactor("get", "leases", func(ac k8stesting.Action) (bool, runtime.Object, error) {
		if ac.(k8stesting.GetAction).GetName() != NodeLeaseName("node1") {
			return false, nil, nil
		}
		l := a.get(ns, NodeLeaseName("node1")).DeepCopy()
		mu.Lock()
		micro := metav1.NewMicroTime(renew)
		mu.Unlock()
		l.Spec.RenewTime = &micro
		return true, l, nil
	})
	n2.e.Campaign(web)
	n2.start()
	n2.waitNodeSeen("node1")
	mu.Lock()
	renew = t0.Add(4 * time.Second)
	mu.Unlock()
	clk.Step(5 * time.Second)
	n2.waitFor("the fresh GET", func() bool {
		n2.e.mu.Lock()
		defer n2.e.mu.Unlock()
		r := n2.e.nodes["node1"]
		return r != nil && !r.at.Equal(t0)
	})
	settle()
	if h, _ := a.holder(web); h != "node1" {
		t.Errorf("node2 took over (%s) from a holder whose heartbeat only the GET showed", h)
	}
}

// A holder that re-asserted its Service Lease is alive, whatever the node
// Lease record held here says: after an API server restart the relist
// shows kubevip-* Leases before vigil-heartbeat-* ones, so a follower may
// see the re-asserted record while its record of the holder's heartbeat is
// still the old, expired (and by GET confirmed) one. It must wait a
// LeaseDuration from its sighting of the new record (the lab caught a
// takeover there: one VIP on two nodes).
func TestReassertedLeaseKeepsHolderAlive(t *testing.T) {
	a, clk, n2 := node1HoldsWeb(t)
	var once sync.Once
	n2.cs.PrependReactor("update", "leases", func(ac k8stesting.Action) (bool, runtime.Object, error) {
		l := ac.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		if l.Name != web.Name {
			return false, nil, nil
		}
		handled := false
		once.Do(func() {
			// node1 re-asserts first: node2's takeover loses a 409.
			a.put(web.Namespace, web.Name, "node1", "i1", Mode, "", t0.Add(5*time.Second))
			handled = true
		})
		if !handled {
			return false, nil, nil
		}
		return true, nil, apierrors.NewConflict(leasesGV.GroupResource(), l.Name, errors.New("modified"))
	})
	n2.e.Campaign(web)
	n2.start()
	n2.waitNodeSeen("node1")
	clk.Step(5 * time.Second) // node1's heartbeat expired by node2's observation
	n2.waitFor("the re-asserted record observed", func() bool {
		n2.e.mu.Lock()
		defer n2.e.mu.Unlock()
		return n2.e.svcs[web].renew.Equal(t0.Add(5 * time.Second))
	})
	settle()
	if h, _ := a.holder(web); h != "node1" || n2.e.Leading(web) {
		t.Fatalf("node2 took over (holder %s) a Lease its holder re-asserted a moment ago", h)
	}
	clk.Step(5 * time.Second) // neither Lease changed for a LeaseDuration: node1 is gone
	n2.waitFor("node2 leading after a LeaseDuration", func() bool { return n2.e.Leading(web) })
}

// A Service Lease sighted after its holder's last heartbeat keeps the
// holder alive for a LeaseDuration from that sighting, past the heartbeat's
// expiry; no heartbeat timer fires then, so the elector notifies the key
// itself: a node that is not a candidate for it (another Service on its
// address is held there) learns it is free. The lab caught a shared
// address that no node took over after its holder crashed.
func TestHeldByOtherNotifiesWhenSightingEnds(t *testing.T) {
	a, clk, n2 := node1HoldsWeb(t)
	n2.start()
	n2.waitNodeSeen("node1")
	clk.Step(3 * time.Second)
	a.put(web.Namespace, web.Name, "node1", "i1", Mode, "", t0.Add(3*time.Second)) // re-asserted: sighted at +3s
	n2.waitFor("the new record observed", func() bool {
		n2.e.mu.Lock()
		defer n2.e.mu.Unlock()
		return n2.e.svcs[web].renew.Equal(t0.Add(3 * time.Second))
	})
	clk.Step(2 * time.Second) // node1's heartbeat expired by node2's observation
	n2.waitFor("the expiry notified", func() bool { return n2.notified(web) >= 2 })
	if !n2.e.HeldByOther(web) {
		t.Fatal("free before a LeaseDuration from the sighting of its record")
	}
	before := n2.notified(web)
	clk.Set(t0.Add(8 * time.Second)) // a LeaseDuration from the sighting
	n2.waitFor("notified when the sighting ends", func() bool { return n2.notified(web) > before })
	if n2.e.HeldByOther(web) {
		t.Error("still held by node1 a LeaseDuration after the last sighting of its record")
	}
}

// A node Lease with a new instance means the Service Lease's writer is
// gone: re-decided at once, without waiting a LeaseDuration.
func TestInstanceChangeRedecidesAtOnce(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	a.put(web.Namespace, web.Name, "node1", "old", Mode, "", t0)
	a.put(ns, NodeLeaseName("node1"), "node1", "new", Mode, "5s/3s/1s", t0)
	n2 := newNode(t, a, clk, "node2", "i2")
	n2.e.Campaign(web)
	n2.start()
	n2.waitFor("node2 leading at once", func() bool { return n2.e.Leading(web) })
	if clk.Elapsed() != 0 {
		t.Errorf("took over after %v, want at once", clk.Elapsed())
	}
}

// A restarted agent does not lead a Service Lease its predecessor held
// (same node, other instance) without writing it again.
func TestRestartedAgentRewritesPredecessorsLease(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	a.put(web.Namespace, web.Name, "node1", "old", Mode, "", t0)
	n := newNode(t, a, clk, "node1", "new")
	n.e.Campaign(web)
	n.start()
	n.waitFor("leading", func() bool { return n.e.Leading(web) })
	if _, inst := a.holder(web); inst != "new" {
		t.Errorf("Service Lease instance %q, want the new one written", inst)
	}
}

// After a heartbeat lapse the holder re-asserts its Lease (a guarded
// write) before leading again; a takeover meanwhile wins.
func TestLapseReassertsBeforeLeading(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	n := newNode(t, a, clk, "node1", "i1")
	n.e.Campaign(web)
	n.start()
	n.waitFor("leading", func() bool { return n.e.Leading(web) })
	var fail sync.Mutex
	failing := true
	n.cs.PrependReactor("update", "leases", func(ac k8stesting.Action) (bool, runtime.Object, error) {
		fail.Lock()
		defer fail.Unlock()
		if failing && ac.(k8stesting.UpdateAction).GetObject().(metav1.Object).GetName() == NodeLeaseName("node1") {
			return true, nil, apierrors.NewServiceUnavailable("down")
		}
		return false, nil, nil
	})
	before := n.writes("kubevip-")
	clk.Step(4 * time.Second)
	n.waitFor("stepped down", func() bool { return !n.e.Leading(web) })
	fail.Lock()
	failing = false
	fail.Unlock()
	clk.Step(2 * time.Second)
	n.waitFor("leading again", func() bool { return n.e.Leading(web) })
	if got := n.writes("kubevip-") - before; got != 1 {
		t.Errorf("%d Service Lease writes after the lapse, want 1 (the re-assertion)", got)
	}
}

// No failback: a Service stays with its live holder when a node that ranks
// higher for it joins.
func TestNoFailback(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	// A key for which node2 ranks above node1.
	key := web
	for i := 0; score(key, "node2") < score(key, "node1"); i++ {
		key = svc(i)
	}
	n1 := newNode(t, a, clk, "node1", "i1")
	n1.e.Campaign(key)
	n1.start()
	n1.waitFor("node1 leading", func() bool { return n1.e.Leading(key) })
	n2 := newNode(t, a, clk, "node2", "i2")
	n2.e.Campaign(key)
	n2.start()
	for range 6 {
		clk.Step(time.Second)
		settle()
	}
	if h, _ := a.holder(key); h != "node1" || !n1.e.Leading(key) {
		t.Errorf("holder %s, want node1 to keep it", h)
	}
}

// Rendezvous ranks spread Services evenly and give every node a distinct
// rank per Service.
func TestRendezvousSpread(t *testing.T) {
	for _, nodes := range []int{3, 10} {
		count := map[string]int{}
		for i := range 200 {
			best, bestScore := "", uint64(0)
			for j := range nodes {
				name := fmt.Sprintf("node%d", j+1)
				if s := score(svc(i), name); best == "" || s > bestScore {
					best, bestScore = name, s
				}
			}
			count[best]++
		}
		lo, hi := 200, 0
		for j := range nodes {
			c := count[fmt.Sprintf("node%d", j+1)]
			lo, hi = min(lo, c), max(hi, c)
		}
		if float64(hi) > 1.5*float64(lo)+float64(nodes) {
			t.Errorf("%d nodes: busiest %d, least busy %d Services of 200", nodes, hi, lo)
		}
	}
}

// The node ranked r waits r × RankDelay before taking a free Service.
func TestRankDelay(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	key := web
	for i := 0; score(key, "node2") < score(key, "node1"); i++ {
		key = svc(i)
	}
	// node2 ranks first but is not a candidate; node1 is second.
	a.put(ns, NodeLeaseName("node2"), "node2", "j", Mode, "5s/3s/1s", t0)
	n1 := newNode(t, a, clk, "node1", "i1")
	n1.start()
	n1.waitFor("node1's heartbeat", func() bool { return a.get(ns, NodeLeaseName("node1")) != nil })
	n1.e.Campaign(key)
	settle()
	if h, _ := a.holder(key); h != "" {
		t.Fatalf("taken by %s before the rank delay", h)
	}
	clk.Step(100 * time.Millisecond)
	n1.waitFor("node1 leading after one rank delay", func() bool { return n1.e.Leading(key) })
}

// Another agent's mode or durations are reported, never adopted.
func TestMismatchReported(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	var mu sync.Mutex
	got := map[string]string{}
	n := newNode(t, a, clk, "node1", "i1", func(c *Config) {
		c.OnMismatch = func(node, detail string) { mu.Lock(); got[node] = detail; mu.Unlock() }
	})
	n.start()
	a.put(ns, NodeLeaseName("node2"), "node2", "j", Mode, "1s/700ms/300ms", t0)
	a.put(ns, NodeLeaseName("node3"), "node3", "k", "", "", t0)
	a.put("default", "kubevip-other", "node4", "m", "", "", t0)
	n.waitFor("three reports", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 })
	want := map[string]string{
		"node2": `node node2 runs lease durations "1s/700ms/300ms", this agent 5s/3s/1s`,
		"node3": `node node3 runs election mode "", this agent runs node`,
		"node4": "node node4 holds Service Lease default/kubevip-other in per-Service mode, this agent runs node",
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
}

// Resign releases the Lease (holder "") so another node takes over at once.
func TestResignReleases(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	n := newNode(t, a, clk, "node1", "i1")
	n.e.Campaign(web)
	n.start()
	n.waitFor("leading", func() bool { return n.e.Leading(web) })
	if err := n.e.Resign(context.Background(), web); err != nil {
		t.Fatal(err)
	}
	if h, _ := a.holder(web); h != "" || n.e.Leading(web) {
		t.Errorf("after Resign: holder %q, leading %v", h, n.e.Leading(web))
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tt := range []struct {
		name   string
		ld, rd time.Duration
		ok     bool
	}{
		{"defaults", 0, 0, true},
		{"sub-second", time.Second, 700 * time.Millisecond, true},
		{"renew deadline not below the lease", time.Second, time.Second, false},
		{"interval not below the renew deadline", 9 * time.Second, 3 * time.Second, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Identity: "n", Instance: "i", NodeNamespace: ns, LeaseDuration: tt.ld, RenewDeadline: tt.rd, RetryPeriod: 100 * time.Millisecond}
			if err := c.defaults(); (err == nil) != tt.ok {
				t.Errorf("defaults() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

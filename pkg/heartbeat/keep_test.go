package heartbeat

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/election"
)

// fakeKeeper vouches with reports lag old while vouch is set.
type fakeKeeper struct {
	clk *clocktest.Fake

	mu        sync.Mutex
	vouch     bool
	epoch     uint64
	from      time.Time
	reachable bool
}

func (k *fakeKeeper) Vouched() (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.clk.Now().Add(-200 * time.Millisecond), k.vouch
}

func (k *fakeKeeper) Epoch() (uint64, time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.epoch, k.from, k.reachable
}

func (k *fakeKeeper) Fresh() time.Duration { return time.Second }

func (k *fakeKeeper) set(f func(*fakeKeeper)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(k)
}

// failBeats makes this node's heartbeats fail while the flag is set.
func failBeats(n *node, name string) *atomic.Bool {
	var fail atomic.Bool
	fail.Store(true)
	n.cs.PrependReactor("update", "leases", func(ac k8stesting.Action) (bool, runtime.Object, error) {
		if fail.Load() && ac.(k8stesting.UpdateAction).GetObject().(metav1.Object).GetName() == NodeLeaseName(name) {
			return true, nil, apierrors.NewServiceUnavailable("down")
		}
		return false, nil, nil
	})
	return &fail
}

// The holder rule in node mode: past the heartbeat deadline every Service
// is kept while the Keeper vouches; the heartbeat accepted when the API is
// back is no lapse (no Service Lease rewritten) and reports the kept time;
// without a vouch the term ends at once.
func TestKeptHeartbeatTerm(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	k := &fakeKeeper{clk: clk, reachable: true}
	var mu sync.Mutex
	var kept []time.Duration
	n := newNode(t, a, clk, "node1", "i1", func(c *Config) {
		c.Keeper = k
		c.Kept = func(_ election.Key, d time.Duration) { mu.Lock(); kept = append(kept, d); mu.Unlock() }
	})
	n.e.Campaign(web)
	n.start()
	n.waitFor("leading", func() bool { return n.e.Leading(web) })
	fail := failBeats(n, "node1")
	k.set(func(k *fakeKeeper) { k.vouch, k.reachable = true, false })
	writes := n.writes("kubevip-")
	clk.Step(3 * time.Second)
	clk.Step(20 * time.Second)
	term, ok := n.e.Term(web)
	since := clk.Now().Add(-200 * time.Millisecond)
	if diff := cmp.Diff(election.Term{Deadline: since.Add(time.Second), Expiry: since.Add(5 * time.Second)}, term); !ok || diff != "" {
		t.Fatalf("kept term (leading %v; -want +got):\n%s", ok, diff)
	}
	if n.e.KeptCount() != 1 {
		t.Errorf("KeptCount = %d, want 1", n.e.KeptCount())
	}
	fail.Store(false)
	k.set(func(k *fakeKeeper) { k.reachable = true })
	n.e.KeeperChanged() // the API is back: a heartbeat now
	n.waitFor("the heartbeat renewed", func() bool { return n.e.KeptCount() == 0 })
	settle()
	if w := n.writes("kubevip-"); w != writes || !n.e.Leading(web) {
		t.Errorf("%d Service Lease writes after the kept term, leading %v; want none, leading", w-writes, n.e.Leading(web))
	}
	mu.Lock()
	if len(kept) != 1 || kept[0] < 20*time.Second {
		t.Errorf("Kept reported %v, want one of at least 20s", kept)
	}
	mu.Unlock()

	fail.Store(true)
	k.set(func(k *fakeKeeper) { k.reachable = false })
	clk.Step(3 * time.Second)
	if !n.e.Leading(web) {
		t.Fatal("not kept in the second outage")
	}
	k.set(func(k *fakeKeeper) { k.vouch = false })
	n.e.KeeperChanged()
	if n.e.Leading(web) {
		t.Error("still leading after the Keeper stopped vouching")
	}
	k.set(func(k *fakeKeeper) { k.vouch = true })
	clk.Step(time.Second)
	if n.e.Leading(web) {
		t.Error("a term that ended came back without an accepted heartbeat")
	}
}

// The follower rule in node mode: nothing is written while this node
// cannot reach the API, and a holder's node Lease last seen changing long
// ago expires only LeaseDuration after the regain.
func TestHeartbeatFollowerClocksStartAfresh(t *testing.T) {
	a := newAPI(t)
	clk := clocktest.New(t0)
	a.put(ns, NodeLeaseName("node2"), "node2", "j1", Mode, "5s/3s/1s", t0)
	a.put(web.Namespace, web.Name, "node2", "j1", Mode, "", t0)
	k := &fakeKeeper{clk: clk}
	n := newNode(t, a, clk, "node1", "i1", func(c *Config) { c.Keeper = k })
	n.e.Campaign(web)
	n.start()
	clk.Step(20 * time.Second)
	settle()
	if w := n.writes("kubevip-"); w != 0 {
		t.Fatalf("%d Service Lease writes while the API is unreachable by this node", w)
	}
	regain := clk.Now()
	k.set(func(k *fakeKeeper) { k.reachable, k.epoch, k.from = true, 1, regain })
	clk.Step(4900 * time.Millisecond)
	settle()
	if h, _ := a.holder(web); h != "node2" {
		t.Fatalf("taken over by %s within LeaseDuration of the regain", h)
	}
	clk.Set(regain.Add(5 * time.Second))
	n.waitFor("taking over LeaseDuration after the regain", func() bool { return n.e.Leading(web) })
}

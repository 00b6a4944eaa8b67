package election

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

func spreadNode(t *testing.T, a *apiServer, clk *clocktest.Fake, name string, mod func(*Config)) *node {
	cfg := Config{Identity: name, Instance: name + "-boot", Clock: clk}
	mod(&cfg)
	return newNodeWith(t, a, clk, cfg)
}

// keyRankedFirst returns a key for which first outranks second.
func keyRankedFirst(first, second string) Key {
	for i := 0; ; i++ {
		k := Key{Namespace: "default", Name: fmt.Sprintf("kubevip-s%d", i)}
		if Rendezvous(k, first) > Rendezvous(k, second) {
			return k
		}
	}
}

// With a rank delay, a free Lease goes to the node that ranks first for it
// among the live holders, even when the other node looks first.
func TestRankDelayGivesFreeLeaseToFirstRanked(t *testing.T) {
	a := newAPIServer(t)
	clk := clocktest.New(t0)
	rank := func(c *Config) { c.RankDelay = 100 * time.Millisecond }
	n1, n2 := spreadNode(t, a, clk, "node1", rank), spreadNode(t, a, clk, "node2", rank)
	// Both hold a Lease already, so each sees the other as live.
	a.hold(Key{"default", "kubevip-x1"}, "node1", "node1-boot", t0)
	a.hold(Key{"default", "kubevip-x2"}, "node2", "node2-boot", t0)
	n1.start()
	n2.start()
	n1.waitFor("peers seen", func() bool { return n1.observed(Key{"default", "kubevip-x2"}) })
	key := keyRankedFirst("node2", "node1")
	n1.e.Campaign(key) // node1 looks first: it waits its rank delay
	n1.waitFor("node1 waiting", func() bool { return len(n1.raceTimers()) == 1 && n1.raceTimers()[0].State == clocktest.Armed })
	if h, _ := a.holderOrEmpty(key); h != "" {
		t.Fatalf("taken by %s before the rank delay", h)
	}
	n2.e.Campaign(key)
	n2.waitFor("node2 leading", func() bool { return n2.e.Leading(key) })
	clk.Step(100 * time.Millisecond)
	n1.waitFor("node1 sees node2's hold", func() bool { return n1.e.HeldByOther(key) })
	if h, _ := a.holder(key); h != "node2" {
		t.Errorf("holder %s, want node2 (ranked first)", h)
	}
}

// Spread renewals: the first renewal comes at a hashed point between half
// and all of RetryPeriod; later ones every RetryPeriod.
func TestSpreadRenewals(t *testing.T) {
	a := newAPIServer(t)
	clk := clocktest.New(t0)
	n := spreadNode(t, a, clk, "node1", func(c *Config) { c.SpreadRenewals = true })
	n.start()
	n.lead(web)
	first := n.e.firstRenewal(web, t0)
	if first.Before(t0.Add(500*time.Millisecond)) || first.After(t0.Add(time.Second)) {
		t.Fatalf("first renewal at +%v, want within [0.5s, 1s]", first.Sub(t0))
	}
	n.waitRacesArmed(1, first)
	clk.Set(first)
	n.waitRacesArmed(1, first.Add(time.Second))
}

// While a renewal has failed, or was answered after more than half a
// RetryPeriod (the API server does not keep up), within the last
// RetryPeriod, acquisitions back off; renewals go on.
func TestAcquisitionsBackOffAfterBadRenewal(t *testing.T) {
	tests := []struct {
		name     string
		answer   func(clk *clocktest.Fake) error // the renewal's fate
		answered time.Duration                   // when, after t0
	}{
		{"failed", func(*clocktest.Fake) error { return errFake }, time.Second},
		{"slow", func(clk *clocktest.Fake) error { clk.Step(600 * time.Millisecond); return nil }, 1600 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPIServer(t)
			clk := clocktest.New(t0)
			n := spreadNode(t, a, clk, "node1", func(c *Config) { c.MaxAcquiring = 4 })
			n.start()
			n.lead(web)
			bad := true
			n.cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
				if !bad {
					return false, nil, nil
				}
				bad = false
				if err := tt.answer(clk); err != nil {
					return true, nil, err
				}
				return false, nil, nil
			})
			clk.Set(t0.Add(time.Second)) // the renewal
			n.waitFor("the bad renewal", func() bool { return !n.e.renewFailedAt().IsZero() })
			if got := n.e.renewFailedAt(); !got.Equal(t0.Add(tt.answered)) {
				t.Errorf("back-off counted from +%v, want the answer at +%v", got.Sub(t0), tt.answered)
			}
			other := Key{"default", "kubevip-other"}
			n.e.Campaign(other)
			n.waitFor("the acquisition to back off", func() bool {
				for _, ts := range n.raceTimers() {
					if ts.At.Equal(t0.Add(tt.answered + time.Second)) {
						return true
					}
				}
				return false
			})
			if h, _ := a.holderOrEmpty(other); h != "" {
				t.Errorf("acquired by %s while renewals go badly", h)
			}
		})
	}
}

func (e *Elector) renewFailedAt() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.renewFailed
}

// holderOrEmpty is holder for a Lease that may not exist.
func (a *apiServer) holderOrEmpty(key Key) (string, string) {
	if _, err := a.tracker.Get(leasesGVR, key.Namespace, key.Name); err != nil {
		return "", ""
	}
	return a.holder(key)
}

// Config.Peers (the eligible Nodes) are ranked even before they hold any
// Lease: the node ranked second waits one rank delay.
func TestRankDelayRanksConfiguredPeers(t *testing.T) {
	a := newAPIServer(t)
	clk := clocktest.New(t0)
	n1 := spreadNode(t, a, clk, "node1", func(c *Config) {
		c.RankDelay = 100 * time.Millisecond
		c.Peers = func() []string { return []string{"node1", "node2"} }
	})
	n1.start()
	key := keyRankedFirst("node2", "node1")
	n1.e.Campaign(key)
	n1.waitRacesArmed(1, t0.Add(100*time.Millisecond))
	if h, _ := a.holderOrEmpty(key); h != "" {
		t.Fatalf("taken by %s before the rank delay", h)
	}
	clk.Set(t0.Add(100 * time.Millisecond))
	n1.waitFor("node1 leading after one rank delay", func() bool { return n1.e.Leading(key) })
}

// MaxHeld: a node holding as many Leases as its budget renews writes
// nothing for a further one (and says it is full) until a hold ends; then
// it takes it.
func TestMaxHeldWaitsForRoom(t *testing.T) {
	a := newAPIServer(t)
	clk := clocktest.New(t0)
	var mu sync.Mutex
	var fulls []bool
	n := spreadNode(t, a, clk, "node1", func(c *Config) {
		c.MaxAcquiring, c.MaxHeld = 4, 2
		c.Full = func(full bool) { mu.Lock(); fulls = append(fulls, full); mu.Unlock() }
	})
	n.start()
	k1, k2, k3 := Key{"default", "kubevip-a"}, Key{"default", "kubevip-b"}, Key{"default", "kubevip-c"}
	n.lead(k1)
	n.lead(k2)
	n.e.Campaign(k3)
	n.waitFor("node1 full", func() bool { mu.Lock(); defer mu.Unlock(); return len(fulls) == 1 })
	writes := n.writes()
	if h, _ := a.holderOrEmpty(k3); h != "" {
		t.Fatalf("a third Lease taken by %q with MaxHeld 2", h)
	}
	if n.writes() != writes {
		t.Fatal("wrote while full")
	}
	// Its wait is told once every other candidate had its chance: a
	// RetryPeriod after it was seen free (no rank delay here).
	if n.e.Waiting(k3) {
		t.Error("Waiting before the other candidates had their chance")
	}
	before := n.notified(k3)
	clk.Step(time.Second)
	n.waitFor("the waiting key notified", func() bool { return n.notified(k3) > before })
	if !n.e.Waiting(k3) || n.e.Waiting(k1) {
		t.Errorf("Waiting: %v for the third, %v for a held one; want true, false", n.e.Waiting(k3), n.e.Waiting(k1))
	}
	if err := n.e.Resign(t.Context(), k1); err != nil {
		t.Fatal(err)
	}
	n.waitFor("the third Lease led once a hold ended", func() bool { return n.e.Leading(k3) })
	if n.e.Waiting(k3) {
		t.Error("still Waiting once led")
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]bool{true, false}, fulls); diff != "" {
		t.Errorf("Full calls (-want +got):\n%s", diff)
	}
}

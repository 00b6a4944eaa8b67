//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/testing/chaos/checker"
)

// Opt-in rebalancing (issue 11). A Service stays with a live holder, so
// after a rolling restart of every agent the node restarted last holds
// nothing. With vigil_rebalance=true the agents hand Services over, one at
// a time, until each is on the node the election ranks first for it; a
// handover is graceful (withdrawn, released, taken at once: bound nowhere
// for tens of milliseconds, where a failover waits out the 5 s lease), and
// no VIP is ever bound on two nodes. In per-Service mode the idle node is
// seen alive by its presence Lease; in node mode by its heartbeat. How
// long a handover leaves its VIP unbound is `make bench-rebalance`'s
// figure (docs/bench-rebalance.md), not this test's.
func TestRebalanceAfterRollingRestart(t *testing.T) {
	for _, mode := range rebalanceModes {
		t.Run(mode.name, func(t *testing.T) {
			gaps := rebalanceAfterRollingRestart(t, newCluster(t, 3, mode.env()...))
			// Graceful, not a failover: the successor takes each Service
			// on the release, never on the lease's expiry (5 s).
			if worst := slices.Max(gaps); worst > time.Second {
				t.Errorf("a handover left its VIP bound nowhere for %v: that is a failover (lease 5 s), not a graceful handover", worst)
			}
		})
	}
}

var rebalanceModes = []rebalanceMode{{"service", "vigil_election_mode=service"}, {"node", "vigil_election_mode=node"}}

type rebalanceMode struct{ name, setting string }

func (m rebalanceMode) env() []string {
	return []string{m.setting, "vigil_rebalance=true", "vigil_rebalance_interval=250ms", "vigil_log_level=info"}
}

// rebalanceAfterRollingRestart restarts every agent of c in turn, the last
// one after the others have taken all its Services, and returns how long
// each handover of the rebalancing that follows left its VIP bound nowhere.
func rebalanceAfterRollingRestart(t *testing.T, c *cluster) []time.Duration {
	for _, n := range c.allNodes() {
		c.createNode(n) // as in a real cluster: the elector ranks the eligible Nodes
	}
	c.startAll()
	cs := unthrottledClient(t)
	links := nodeLinks(t, c)
	const n = 45
	c.watchNoDual(links, n)
	c.createMany(cs, links, 0, n, 30*time.Second)
	nodes := c.allNodes()
	for _, name := range nodes[:len(nodes)-1] {
		c.stopAndWaitTakenOver(links, n, name)
		c.startAgent(name)
		c.waitReady(name)
	}
	last := nodes[len(nodes)-1]
	held := c.stopAndWaitTakenOver(links, n, last)
	t.Logf("%s stopped: the others hold %v", last, perNode(held, nodes))
	return c.rebalanced(links, n, last)
}

// stopAndWaitTakenOver stops name's agent with SIGTERM and waits until the
// other nodes hold each of the first n VIPs, returning who holds which.
func (c *cluster) stopAndWaitTakenOver(links map[string]*netlink.Handle, n int, name string) map[netip.Addr]string {
	if _, ok := c.agents[name].Stop(10 * time.Second); !ok {
		c.t.Fatalf("agent on %s did not stop on SIGTERM", name)
	}
	return c.waitAllBound(links, n, map[string]bool{name: true}, 15*time.Second)
}

// rebalanced restarts last's agent and waits until every VIP is on the node
// ranked first for its Service, returning the time each VIP moved was bound
// nowhere meanwhile.
func (c *cluster) rebalanced(links map[string]*netlink.Handle, n int, last string) []time.Duration {
	t := c.t
	want := map[netip.Addr]string{}
	for i := range n {
		want[bigVIP(i)] = rankedFirst(election.Key{Namespace: c.ns, Name: "kubevip-" + bigName(i)}, c.allNodes())
	}
	gaps := c.watchBoundGaps(links, n)
	start := time.Now()
	c.startAgent(last)
	c.waitReady(last)
	var got map[netip.Addr]string
	err := waitEvery(c.ctx, 50*time.Millisecond, time.Minute, func() bool {
		got = boundVIPs(t, links, n, nil)
		return maps.Equal(got, want)
	})
	moved := gaps()
	d := checker.Distribution(moved)
	t.Logf("rebalanced in %v: %v per node (want %v); %d handovers, unbound for at most %v (p50 %v)",
		time.Since(start).Round(time.Millisecond), perNode(got, c.allNodes()), perNode(want, c.allNodes()),
		d.N, d.Max, d.P50)
	if err != nil {
		t.Fatalf("not every VIP on the node ranked first after a minute: %d of %d", matching(got, want), n)
	}
	if len(moved) == 0 {
		t.Fatal("no handover seen: the restarted node would have stayed empty")
	}
	return moved
}

// rankedFirst is the node the rendezvous ranking puts first for key.
func rankedFirst(key election.Key, nodes []string) string {
	best := ""
	for _, n := range nodes {
		if best == "" || election.Outranks(key, n, best) {
			best = n
		}
	}
	return best
}

// watchBoundGaps samples every 5 ms which nodes hold the first n bench VIPs and
// records, for each VIP that goes unbound and comes back, the time between
// the last sample that saw it bound and the first that sees it again (at
// most one sample late). The returned func stops the sampling and returns
// the gaps.
func (c *cluster) watchBoundGaps(links map[string]*netlink.Handle, n int) func() []time.Duration {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var gaps []time.Duration
	var longest time.Duration
	var worst string
	nodes := slices.Sorted(maps.Keys(links))
	wg.Go(func() {
		lastSeen := map[netip.Addr]time.Time{}
		missing := map[netip.Addr]bool{}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			at := time.Now()
			on := c.boundOn(links, nodes)
			for i := range n {
				ip := bigVIP(i)
				switch {
				case len(on[ip]) > 0 && missing[ip]:
					gap := at.Sub(lastSeen[ip])
					gaps = append(gaps, gap)
					if gap > longest {
						longest = gap
						worst = fmt.Sprintf("%s (%s) unbound from %s to %s, then on %v", ip, bigName(i), lastSeen[ip].Format("15:04:05.000"), at.Format("15:04:05.000"), on[ip])
					}
					missing[ip] = false
					lastSeen[ip] = at
				case len(on[ip]) > 0:
					lastSeen[ip] = at
				case !lastSeen[ip].IsZero():
					missing[ip] = true
				}
			}
		}
	})
	var once sync.Once
	return func() []time.Duration {
		once.Do(func() { close(stop); wg.Wait(); c.t.Logf("longest gap: %s", worst) })
		return gaps
	}
}

func perNode(holders map[netip.Addr]string, nodes []string) map[string]int {
	count := map[string]int{}
	for _, n := range nodes {
		count[n] = 0
	}
	for _, n := range holders {
		count[n]++
	}
	return count
}

func matching(got, want map[netip.Addr]string) int {
	m := 0
	for ip, n := range want {
		if got[ip] == n {
			m++
		}
	}
	return m
}

//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"k8s.io/client-go/kubernetes"
)

// Node-heartbeat mode (issue 11) with the default lease 5s/3s/1s (the
// shortest the dead man's switch allows is about 4.7s with a 1s retry
// period). The other election lab tests run in this mode with
// VIGIL_E2E_AGENT_ENV=vigil_election_mode=node.
var heartbeatEnv = []string{"vigil_election_mode=node", "vigil_log_level=info"}

// watchNoDual samples every 25 ms until the test ends that none of the
// first n bench VIPs is bound on two nodes that are not crashed.
func (c *cluster) watchNoDual(links map[string]*netlink.Handle, n int) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first string
	seen := 0
	wg.Go(func() {
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if d := c.dualBound(links, n); d != "" {
				mu.Lock()
				if seen == 0 {
					first = fmt.Sprintf("%s at %s", d, time.Now().Format("15:04:05.000"))
				}
				seen++
				mu.Unlock()
			}
		}
	})
	c.t.Cleanup(func() {
		close(stop)
		wg.Wait()
		if seen > 0 {
			c.t.Errorf("bound on two nodes at once in %d samples, first: %s", seen, first)
		}
	})
}

// dualBound names a VIP bound on more than one live node at one moment
// ("" if none). Nodes are read one after another, so a handover between
// two reads could look like two holders; two passes in the same order tell
// them apart: a VIP on nodes A and B (A read first) in the first pass and
// still on A in the second was on both when B was read.
func (c *cluster) dualBound(links map[string]*netlink.Handle, n int) string {
	nodes := slices.Sorted(maps.Keys(links))
	first, second := c.boundOn(links, nodes), c.boundOn(links, nodes)
	for i := range n {
		on := first[bigVIP(i)]
		if len(on) > 1 && slices.Contains(second[bigVIP(i)], on[0]) {
			return bigVIP(i).String() + " on " + strings.Join(on, ",")
		}
	}
	return ""
}

// boundOn reads, node by node in order, which live nodes hold each bench
// VIP.
func (c *cluster) boundOn(links map[string]*netlink.Handle, nodes []string) map[netip.Addr][]string {
	on := map[netip.Addr][]string{}
	for _, node := range nodes {
		if c.isCrashed(node) {
			continue
		}
		addrs, err := links[node].AddrList(nil, netlink.FAMILY_V4)
		if err != nil {
			continue // a namespace going away at the end of the test
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && bigVIPs.Contains(ip) {
				on[ip] = append(on[ip], node)
			}
		}
	}
	return on
}

// createMany creates Services 0..n-1 (with ready endpoints) and waits until
// each VIP is bound on exactly one node.
func (c *cluster) createMany(cs kubernetes.Interface, links map[string]*netlink.Handle, from, to int, within time.Duration) map[netip.Addr]string {
	c.t.Helper()
	if err := parallel(to-from, func(i int) error { return createBigSlice(c, cs, from+i) }); err != nil {
		c.t.Fatal(err)
	}
	if err := parallel(to-from, func(i int) error { return createBigService(c, cs, from+i) }); err != nil {
		c.t.Fatal(err)
	}
	return c.waitAllBound(links, to, nil, within)
}

// waitAllBound waits until each of the first n VIPs is bound on exactly one
// node outside skip.
func (c *cluster) waitAllBound(links map[string]*netlink.Handle, n int, skip map[string]bool, within time.Duration) map[netip.Addr]string {
	c.t.Helper()
	return c.waitBound(links, n, n, skip, within)
}

// waitBound waits until exactly want of the first n VIPs are bound, each
// on one node outside skip, and returns who holds which.
func (c *cluster) waitBound(links map[string]*netlink.Handle, n, want int, skip map[string]bool, within time.Duration) map[netip.Addr]string {
	c.t.Helper()
	var got map[netip.Addr]string
	err := waitEvery(c.ctx, 50*time.Millisecond, within, func() bool {
		got = boundVIPs(c.t, links, n, skip)
		return len(got) == want
	})
	if err != nil {
		for _, h := range c.n.Nodes {
			log := c.agents[h.Name].Log()
			c.t.Logf("%s's agent log (tail):\n%s", h.Name, log[max(0, len(log)-3000):])
		}
		c.t.Fatalf("%d of %d VIPs bound on exactly one node after %v, want %d", len(got), n, within, want)
	}
	return got
}

// Ten nodes, three crash at once (agent killed, cable pulled): every VIP
// they held is bound on one live node again within the lease plus margin,
// and no VIP is ever on two live nodes.
func TestHeartbeatTenNodesKillThree(t *testing.T) {
	c := newCluster(t, 10, heartbeatEnv...)
	c.startAll()
	cs := unthrottledClient(t)
	links := nodeLinks(t, c)
	const n = 40
	c.watchNoDual(links, n)
	holders := c.createMany(cs, links, 0, n, 30*time.Second)
	lo, hi := spread(holders, c.allNodes())
	t.Logf("%d VIPs on 10 nodes: %d to %d per node", n, lo, hi)
	count := map[string]int{}
	for _, h := range holders {
		count[h]++
	}
	nodes := c.allNodes()
	slices.SortFunc(nodes, func(a, b string) int { return count[b] - count[a] })
	victims := nodes[:3]
	start := time.Now()
	var wg sync.WaitGroup
	for _, v := range victims {
		wg.Go(func() { c.crash(v) })
	}
	wg.Wait()
	skip := map[string]bool{victims[0]: true, victims[1]: true, victims[2]: true}
	c.waitAllBound(links, n, skip, 15*time.Second)
	t.Logf("crash of %v (%d VIPs): all bound again after %v", victims, count[victims[0]]+count[victims[1]]+count[victims[2]], time.Since(start))
}

// The API server restarted while Services are being created: afterwards
// every VIP is bound on exactly one node again, never on two meanwhile.
func TestHeartbeatAPIServerRestart(t *testing.T) {
	c := newCluster(t, 3, heartbeatEnv...)
	c.startAll()
	cs := unthrottledClient(t)
	links := nodeLinks(t, c)
	const first, more = 60, 30
	c.watchNoDual(links, first+more)
	c.createMany(cs, links, 0, first, 30*time.Second)
	var wg sync.WaitGroup
	wg.Go(func() {
		// Under load: creates keep coming while the API server restarts
		// (each retried until it is back).
		for i := first; i < first+more; i++ {
			_ = waitEvery(c.ctx, 200*time.Millisecond, time.Minute, func() bool {
				return createBigSlice(c, cs, i) == nil || c.ctx.Err() != nil
			})
			_ = waitEvery(c.ctx, 200*time.Millisecond, time.Minute, func() bool {
				return createBigService(c, cs, i) == nil || c.ctx.Err() != nil
			})
		}
	})
	start := time.Now()
	if err := cp.RestartAPIServer(c.ctx); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(start)
	wg.Wait()
	c.waitAllBound(links, first+more, nil, 30*time.Second)
	t.Logf("API server back after %v; all %d VIPs bound on one node %v after the restart began", ready, first+more, time.Since(start))
	for _, h := range c.n.Nodes {
		if c.agents[h.Name].Exited() {
			t.Errorf("agent on %s exited: %v", h.Name, c.agents[h.Name].Err())
		}
	}
}

// One agent switched to the other mode: the mismatch is reported (in both
// modes' logs) and no VIP is ever bound on two nodes.
func TestHeartbeatModeMismatchReported(t *testing.T) {
	c := newCluster(t, 3, "vigil_log_level=info")
	c.startAgent("node1", "vigil_election_mode=node")
	c.startAgent("node2", "vigil_election_mode=node")
	c.startAgent("node3") // per-Service mode
	for _, h := range c.n.Nodes {
		c.waitReady(h.Name)
	}
	cs := unthrottledClient(t)
	links := nodeLinks(t, c)
	const n = 12
	c.watchNoDual(links, n)
	c.createMany(cs, links, 0, n, 30*time.Second)
	time.Sleep(6 * time.Second) // two lease durations with both modes running
	// node3 always sees the node-mode Leases; the node-mode agents see
	// node3's mode only in a Service Lease it won, which the faster node-mode
	// agents may leave it none of.
	if !strings.Contains(c.agents["node3"].Log(), "election mismatch") {
		t.Error("node3 (per-Service mode) did not report the node-mode Leases it saw")
	}
	if strings.Contains(c.agents["node3"].Log(), "acquired lease") {
		for _, node := range []string{"node1", "node2"} {
			if log := c.agents[node].Log(); !strings.Contains(log, "election mismatch") || !strings.Contains(log, "node3") {
				t.Errorf("%s (node mode) did not report node3's mode though node3 holds a Service Lease", node)
			}
		}
	}
	if got := boundVIPs(t, links, n, nil); len(got) != n {
		t.Errorf("%d of %d VIPs bound on exactly one node with mixed modes", len(got), n)
	}
}

//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/testing/chaos/checker"
)

// TestBenchRebalance is `make bench-rebalance`: the rebalancing after a
// rolling restart (TestRebalanceAfterRollingRestart) repeated in both
// election modes, with the time each graceful handover left its VIP bound
// nowhere (sampled every 5 ms) summed up in a table written to
// $VIGIL_BENCH_OUT. It only runs when that variable is set.
func TestBenchRebalance(t *testing.T) {
	out := benchOut(t, "make bench-rebalance")
	runs := benchRuns(t, 5)
	var b strings.Builder
	b.WriteString(rebalancePreamble)
	b.WriteString("| election mode (3 nodes, 45 Services, lease 5 s / renew 3 s / retry 1 s, one handover per node per 250 ms) | runs | handovers | unbound p50 | p90 | p99 | max | target |\n|---|---|---|---|---|---|---|---|\n")
	for _, mode := range rebalanceModes {
		var gaps []time.Duration
		for i := range runs {
			t.Run(fmt.Sprintf("%s/run%d", mode.name, i), func(t *testing.T) {
				gaps = append(gaps, rebalanceAfterRollingRestart(t, newCluster(t, 3, mode.env()...))...)
			})
		}
		p := checker.Distribution(gaps)
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s | ≤ 50 ms each |\n",
			mode.name, runs, p.N, fmtDur(p.P50), fmtDur(p.P90), fmtDur(p.P99), fmtDur(p.Max))
	}
	t.Logf("\n%s", b.String())
	if t.Failed() {
		t.Fatal("a run failed: no table from a partial benchmark")
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

const rebalancePreamble = `# Rebalancing benchmark (` + "`make bench-rebalance`" + `)

Lab: 3 node namespaces running ` + "`vigil manager`" + ` with ` + "`vigil_rebalance=true vigil_rebalance_interval=250ms`" + `
against the lab's kube-apiserver + etcd; 45 Services (L2, one VIP each). Each run
stops and restarts every agent in turn (SIGTERM, the others take its Services
over, start again), stopping the last one until the other two hold everything,
then starts it: the agents hand Services over, one per node per interval, until
each is on the node the rendezvous ranking puts first for it. A **handover**'s
figure is the time its VIP was bound on no node's eth0 (all nodes read over
netlink every 5 ms: late by at most one sample), from the withdrawal on the old
holder to the bind on the new one; no VIP was ever bound on two nodes (checked
every sample). A failover would wait out the 5 s lease instead.

`

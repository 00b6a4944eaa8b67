//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/testing/lab"
)

// TestBenchFailover is `make bench-failover`: it repeats the lab scenarios
// and writes a table of medians and maxima to $VIGIL_BENCH_OUT. It only runs
// when that variable is set.
func TestBenchFailover(t *testing.T) {
	out := benchOut(t, "make bench-failover")
	runs := 10
	samples := map[string][]time.Duration{}
	for i := range runs {
		t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) {
			for k, v := range failoverRun(t) {
				samples[k] = append(samples[k], v)
			}
		})
	}
	table := benchTable(samples)
	t.Logf("\n%s", table)
	if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
}

var benchRows = []struct{ key, what, kubeVIP string }{
	{"create", "Service created → first GARP on the wire", "target ≤ 0.2 s"},
	{"crash-mac", "crash (SIGKILL + cable pulled) → client's neighbour entry shows the new MAC", "~6.5 s"},
	{"crash-tcp", "crash → TCP connect to the VIP succeeds", "~6.5 s"},
	{"term-mac", "graceful (SIGTERM) → client's neighbour entry shows the new MAC", "~1.1 s"},
	{"term-tcp", "graceful → TCP connect to the VIP succeeds", "~1.1 s"},
}

// benchOut is $VIGIL_BENCH_OUT, the file a benchmark writes its table to;
// without it the benchmark (run by the make target named) is skipped.
func benchOut(t *testing.T, target string) string {
	out := os.Getenv("VIGIL_BENCH_OUT")
	if out == "" {
		t.Skipf("benchmark: set VIGIL_BENCH_OUT=<file> (%s)", target)
	}
	return out
}

// benchRuns is $VIGIL_BENCH_RUNS, the runs a benchmark repeats each
// scenario, or def when it is unset.
func benchRuns(t *testing.T, def int) int {
	v := os.Getenv("VIGIL_BENCH_RUNS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("VIGIL_BENCH_RUNS=%q: want a positive number", v)
	}
	return n
}

func benchTable(samples map[string][]time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario (3 nodes, lease 5 s / renew 3 s / retry 1 s) | runs | median | max | kube-vip |\n|---|---|---|---|---|\n")
	for _, r := range benchRows {
		s := slices.Clone(samples[r.key])
		slices.Sort(s)
		if len(s) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s |\n", r.what, len(s), fmtDur(s[len(s)/2]), fmtDur(s[len(s)-1]), r.kubeVIP)
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// failoverRun measures one create, one crash failover and one graceful
// handover in a fresh lab.
func failoverRun(t *testing.T) map[string]time.Duration {
	c := newCluster(t, 3)
	c.startAll("vigil_log_level=info")
	c.serveAll(8080)
	vip := mustAddr("198.18.0.120")
	c.setEndpoints("web", c.allNodes()...)
	capture, err := c.n.StartCapture(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]time.Duration{}

	start := time.Now()
	c.createService("web", []string{vip.String()})
	first := firstAnnouncement(t, capture, vip)
	res["create"] = first.Time.Sub(start)
	holder := c.n.HostByMACString(first.SrcMAC)
	// The client talks to the VIP, so it has a neighbour entry to update.
	if got, err := c.n.Dial(c.ctx, vip, 8080); err != nil || got != holder {
		t.Fatalf("TCP before failover: %q %v, want %s", got, err, holder)
	}

	// Crash at a random point of the holder's renew period, as a real
	// crash would.
	time.Sleep(rand.N(time.Second))
	start = time.Now()
	c.agents[holder].Kill()
	if err := c.n.CutLAN(c.ctx, c.node(holder)); err != nil {
		t.Fatal(err)
	}
	mac, tcp, next := c.clientSees(vip, holder, start, 15*time.Second)
	res["crash-mac"], res["crash-tcp"] = mac, tcp

	start = time.Now()
	c.agents[next].Signal(15) // SIGTERM
	mac, tcp, _ = c.clientSees(vip, next, start, 10*time.Second)
	res["term-mac"], res["term-tcp"] = mac, tcp
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	return res
}

// clientSees measures, from start, when the client's neighbour entry for vip
// stops pointing at old, and when a TCP connection to vip is answered by a
// node other than old. It returns both and the new node.
func (c *cluster) clientSees(vip netip.Addr, old string, start time.Time, within time.Duration) (mac, tcp time.Duration, next string) {
	c.t.Helper()
	oldMAC := c.node(old).MAC.String()
	ctx, cancel := context.WithTimeout(c.ctx, within)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	var macErr, tcpErr error
	go func() {
		defer wg.Done()
		macErr = lab.WaitFor(ctx, within, func() bool {
			m, err := c.n.NeighborMAC(ctx, vip)
			if err != nil || m == nil || m.String() == oldMAC {
				return false
			}
			mac = time.Since(start)
			return true
		})
	}()
	go func() {
		defer wg.Done()
		tcpErr = lab.WaitFor(ctx, within, func() bool {
			// Lab round trips are well under a millisecond: a short timeout
			// keeps a SYN sent to the old node from hiding the switch.
			dctx, dcancel := context.WithTimeout(ctx, 30*time.Millisecond)
			defer dcancel()
			got, err := c.n.Dial(dctx, vip, 8080)
			if err != nil || got == old {
				return false
			}
			tcp, next = time.Since(start), got
			return true
		})
	}()
	wg.Wait()
	if macErr != nil || tcpErr != nil {
		c.t.Fatalf("after %s went away: neighbour %v, tcp %v", old, macErr, tcpErr)
	}
	return mac, tcp, next
}

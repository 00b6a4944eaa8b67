//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/heartbeat"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/testing/lab"
)

// TestElectionSim is `make bench-election-sim` (issue 11): the election's
// cost model past what the lab's namespaces can hold. Many electors (one
// per simulated node, each with its own client and Lease informer, as an
// agent has) run in this process against the lab's real API server, every
// one a candidate for every Service. Per mode (VIGIL_SIM_MODES, default
// "node"; "service" is per-Service Leases) it reports the time until every
// Service has exactly one leader, lease writes/s and reads/s over a steady
// window from the API server's apiserver_request_total, leadership changes
// in that window, and the takeover time after the busiest elector stops
// (a crash: nothing released). Sizes: VIGIL_SIM_NODES (default 100),
// VIGIL_SIM_SERVICES (default 10000), VIGIL_SIM_WINDOW (default 30s). Runs
// only with VIGIL_SIM_OUT set; writes that file when every mode ran.
func TestElectionSim(t *testing.T) {
	out := os.Getenv("VIGIL_SIM_OUT")
	if out == "" {
		t.Skip("simulation: set VIGIL_SIM_OUT=<file> (make bench-election-sim)")
	}
	nodes, services := envInt(t, "VIGIL_SIM_NODES", 100), envInt(t, "VIGIL_SIM_SERVICES", 10000)
	window := 30 * time.Second
	if w := os.Getenv("VIGIL_SIM_WINDOW"); w != "" {
		var err error
		if window, err = time.ParseDuration(w); err != nil {
			t.Fatalf("VIGIL_SIM_WINDOW: %v", err)
		}
	}
	modes := strings.Split(os.Getenv("VIGIL_SIM_MODES"), ",")
	if modes[0] == "" {
		modes = []string{"node"}
	}
	var rows []string
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			rows = append(rows, simRun(t, mode, nodes, services, window))
		})
	}
	if t.Failed() || len(rows) != len(modes) {
		t.Fatal("not every mode ran: nothing written")
	}
	doc := fmt.Sprintf("# Election cost model: %d electors × %d Services against the lab API server\n\n"+
		"`make bench-election-sim`; lease 5s/3s/1s; steady window %v; load average %s.\n\n"+
		"| mode | all led once (from start) | lease writes/s | lease reads/s (GET+LIST) | leadership changes (steady) | busiest elector stopped (Services) → all led again |\n|---|---|---|---|---|---|\n%s",
		nodes, services, window, loadAvg(), strings.Join(rows, ""))
	t.Logf("\n%s", doc)
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// simElector is what the simulation needs of either mode.
type simElector interface {
	Campaign(election.Key)
	Leading(election.Key) bool
	Run(context.Context) error
	HasSynced() bool
}

type simNode struct {
	el     simElector
	cancel context.CancelFunc
	done   chan struct{}
}

// simRun runs one mode and returns its table row.
func simRun(t *testing.T, mode string, nodes, services int, window time.Duration) string {
	lab.Require(t, cp)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	admin := unthrottledClient(t)
	nsObj, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "sim-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := nsObj.Name
	keys := make([]election.Key, services)
	for i := range keys {
		keys[i] = election.Key{Namespace: ns, Name: fmt.Sprintf("kubevip-sim%05d", i)}
	}
	sim := make([]*simNode, nodes)
	for i := range sim {
		sim[i] = newSimNode(t, mode, ns, fmt.Sprintf("sim%03d", i))
		for _, k := range keys {
			sim[i].el.Campaign(k)
		}
	}
	start := time.Now()
	for _, n := range sim {
		n.start(ctx)
	}
	defer func() {
		for _, n := range sim {
			n.stop()
		}
	}()
	leaders := simWait(t, ctx, sim, keys, nil, 10*time.Minute)
	allLed := time.Since(start)
	writes, reads, changes := simSteady(t, ctx, admin, sim, keys, leaders, window)
	victim, held := busiest(leaders, nodes)
	stopped := time.Now()
	sim[victim].stop()
	simWait(t, ctx, sim, keys, map[int]bool{victim: true}, 5*time.Minute)
	takeover := time.Since(stopped)
	t.Logf("%s: all led after %v; writes %.1f/s reads %.1f/s; %d changes; takeover of %d after %v", mode, allLed, writes, reads, changes, held, takeover)
	return fmt.Sprintf("| %s | %s | %.1f | %.1f | %d | %s (%d) |\n", mode, fmtDur(allLed), writes, reads, changes, fmtDur(takeover), held)
}

func newSimNode(t *testing.T, mode, ns, name string) *simNode {
	cfg, err := lab.RESTConfig(cp.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200 // an agent's lease client budget
	cs, err := kubeclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	instance := fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
	var el simElector
	if mode == "node" {
		el, err = heartbeat.New(heartbeat.Config{Identity: name, Instance: instance, NodeNamespace: ns, Namespace: ns}, cs, func(election.Key) {}, quiet)
	} else {
		el, err = election.New(election.Config{Identity: name, Instance: instance, Namespace: ns}, cs, func(election.Key) {}, quiet)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &simNode{el: el}
}

func (n *simNode) start(ctx context.Context) {
	ctx, n.cancel = context.WithCancel(ctx)
	n.done = make(chan struct{})
	go func() { defer close(n.done); _ = n.el.Run(ctx) }()
}

func (n *simNode) stop() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
	}
}

// simLeaders maps each key index to the one elector leading it (-1: none
// or several), skipping the stopped ones.
func simLeaders(sim []*simNode, keys []election.Key, skip map[int]bool) []int {
	out := make([]int, len(keys))
	for k, key := range keys {
		out[k] = -1
		for i, n := range sim {
			if skip[i] || !n.el.Leading(key) {
				continue
			}
			if out[k] != -1 {
				out[k] = -2
				break
			}
			out[k] = i
		}
	}
	return out
}

// simWait polls until every key has exactly one leader.
func simWait(t *testing.T, ctx context.Context, sim []*simNode, keys []election.Key, skip map[int]bool, within time.Duration) []int {
	t.Helper()
	var leaders []int
	err := waitEvery(ctx, 100*time.Millisecond, within, func() bool {
		leaders = simLeaders(sim, keys, skip)
		for _, l := range leaders {
			if l < 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		led := 0
		for _, l := range leaders {
			if l >= 0 {
				led++
			}
		}
		t.Fatalf("%d of %d Services with exactly one leader after %v", led, len(keys), within)
	}
	return leaders
}

// simSteady measures lease requests per second and leadership changes over
// window.
func simSteady(t *testing.T, ctx context.Context, admin kubernetes.Interface, sim []*simNode, keys []election.Key, leaders []int, window time.Duration) (writes, reads float64, changes int) {
	before, err := leaseRequests(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	prev := leaders
	for time.Since(start) < window {
		time.Sleep(time.Second)
		cur := simLeaders(sim, keys, nil)
		for k := range cur {
			if cur[k] != prev[k] {
				changes++
			}
		}
		prev = cur
	}
	elapsed := time.Since(start).Seconds()
	after, err := leaseRequests(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	d := func(verb string) float64 { return (after[verb] - before[verb]) / elapsed }
	return d("PUT") + d("POST") + d("PATCH"), d("GET") + d("LIST"), changes
}

func busiest(leaders []int, nodes int) (int, int) {
	count := make([]int, nodes)
	for _, l := range leaders {
		if l >= 0 {
			count[l]++
		}
	}
	best := 0
	for i, c := range count {
		if c > count[best] {
			best = i
		}
	}
	return best, count[best]
}

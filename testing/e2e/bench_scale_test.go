//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"k8s.io/client-go/kubernetes"
)

// TestBenchScale is `make bench-scale` (issue 11): agents as processes in
// lab namespaces against the lab's real API server, with 50, 200 and 1,000
// Services on 3 nodes and 200 on 10 (VIGIL_BENCH_SCALE, e.g. "3x50,10x200",
// overrides the rows). For each row it reports the time from the first
// Service create until every VIP is bound on exactly one node (the create
// calls' own time beside it), lease requests per second by verb over a
// steady window (VIGIL_BENCH_WINDOW, default 30s) read from the API
// server's apiserver_request_total{resource="leases"}, holder changes in
// that window, agent RSS and CPU per node, VIPs per node (min/max) and the
// crash failover of the node holding the most VIPs (agent killed, cable
// pulled) until each of its VIPs is bound on another node. The election mode
// and lease settings come from VIGIL_BENCH_ENV (space-separated agent
// variables, e.g. "vigil_election_mode=node vip_leaseduration=1s"). It only
// runs with VIGIL_BENCH_OUT set, and writes that file only if every row ran.
func TestBenchScale(t *testing.T) {
	out := benchOut(t, "make bench-scale")
	rows, err := scaleRows(os.Getenv("VIGIL_BENCH_SCALE"))
	if err != nil {
		t.Fatal(err)
	}
	window := 30 * time.Second
	if w := os.Getenv("VIGIL_BENCH_WINDOW"); w != "" {
		if window, err = time.ParseDuration(w); err != nil {
			t.Fatalf("VIGIL_BENCH_WINDOW: %v", err)
		}
	}
	env := strings.Fields(os.Getenv("VIGIL_BENCH_ENV"))
	load := loadAvg()
	var results []scaleResult
	for _, r := range rows {
		t.Run(fmt.Sprintf("%dnodes_%dsvcs", r.nodes, r.services), func(t *testing.T) {
			res := scaleRun(t, r, window, env)
			t.Logf("%+v", res)
			results = append(results, res)
		})
	}
	if t.Failed() || len(results) != len(rows) {
		t.Fatal("not every row ran: no table written")
	}
	doc := scaleDoc(results, window, env, load, loadAvg())
	t.Logf("\n%s", doc)
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}

type scaleRow struct{ nodes, services int }

// scaleRows parses "3x50,3x200" (empty: the four rows).
func scaleRows(s string) ([]scaleRow, error) {
	if s == "" {
		return []scaleRow{{3, 50}, {3, 200}, {3, 1000}, {10, 200}}, nil
	}
	var rows []scaleRow
	for _, f := range strings.Split(s, ",") {
		n, m, ok := strings.Cut(strings.TrimSpace(f), "x")
		nodes, err1 := strconv.Atoi(n)
		svcs, err2 := strconv.Atoi(m)
		if !ok || err1 != nil || err2 != nil || nodes < 2 || svcs < 1 || svcs > 1000 {
			return nil, fmt.Errorf("VIGIL_BENCH_SCALE: %q is not <nodes ≥ 2>x<services 1..1000>", f)
		}
		rows = append(rows, scaleRow{nodes, svcs})
	}
	return rows, nil
}

type scaleResult struct {
	row        scaleRow
	api        time.Duration // first create sent → last create answered
	announced  time.Duration // first create → every VIP bound on exactly one node (0: never)
	boundAtEnd int           // VIPs bound on exactly one node when the wait ended
	perVerb    map[string]float64
	changes    int // holder changes seen during the steady window
	rss, cpu   []float64
	anon       []float64 // RssAnon: the agent's private memory
	goMem      []goMem   // the Go runtime's own account, per agent
	minVIPs    int
	maxVIPs    int
	crashHeld  int
	crash      time.Duration // 0: not every VIP came back within the wait
	crashFirst time.Duration // the first VIP back (the holder's Lease ran out)
}

// scaleRun runs one row in a fresh lab.
func scaleRun(t *testing.T, r scaleRow, window time.Duration, env []string) scaleResult {
	c := newCluster(t, r.nodes, append([]string{"vigil_log_level=info"}, env...)...)
	for _, n := range c.allNodes() {
		c.createNode(n) // as in a real cluster: the elector ranks the eligible Nodes
	}
	c.startAll()
	cs := unthrottledClient(t)
	links := nodeLinks(t, c)
	if err := parallel(r.services, func(i int) error { return createBigSlice(c, cs, i) }); err != nil {
		t.Fatal(err)
	}
	res := scaleResult{row: r}
	first := time.Now()
	if err := parallel(r.services, func(i int) error { return createBigService(c, cs, i) }); err != nil {
		t.Fatal(err)
	}
	res.api = time.Since(first)
	var holders map[netip.Addr]string
	err := waitEvery(c.ctx, 50*time.Millisecond, 2*time.Minute, func() bool {
		holders = boundVIPs(t, links, r.services, nil)
		return len(holders) == r.services
	})
	res.boundAtEnd = len(holders)
	if err == nil {
		res.announced = time.Since(first)
	}
	time.Sleep(5 * time.Second) // settle: acquisitions done, renewals only
	res.steady(t, c, cs, links, window)
	res.crashFailover(t, c, links)
	return res
}

// keepAgentLogs writes each agent's log to the temporary directory, so a
// flap in a bench row can be explained after the run.
func keepAgentLogs(t *testing.T, c *cluster, row string) {
	for _, n := range c.allNodes() {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("vigil-bench-scale-%s-%s.log", row, n))
		if err := os.WriteFile(path, []byte(c.agents[n].Log()), 0o644); err != nil {
			t.Errorf("keep %s's log: %v", n, err)
			continue
		}
		t.Logf("%s's log: %s", n, path)
	}
}

// steady measures lease requests, holder changes, CPU and RSS over window.
func (res *scaleResult) steady(t *testing.T, c *cluster, cs kubernetes.Interface, links map[string]*netlink.Handle, window time.Duration) {
	before, err := leaseRequests(c.ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	cpu0 := agentCPU(t, c)
	start := time.Now()
	prev := boundVIPs(t, links, res.row.services, nil)
	for time.Since(start) < window {
		time.Sleep(250 * time.Millisecond)
		cur := boundVIPs(t, links, res.row.services, nil)
		for vip, n := range cur {
			if p, ok := prev[vip]; !ok || p != n {
				res.changes++
				t.Logf("steady window +%v: %s bound on %q, was %q", time.Since(start).Round(time.Millisecond), vip, n, p)
			}
		}
		for vip, p := range prev {
			if _, ok := cur[vip]; !ok {
				res.changes++
				t.Logf("steady window +%v: %s no longer bound, was on %s", time.Since(start).Round(time.Millisecond), vip, p)
			}
		}
		prev = cur
	}
	if res.changes > 0 {
		keepAgentLogs(t, c, fmt.Sprintf("%dx%d", res.row.nodes, res.row.services))
	}
	elapsed := time.Since(start).Seconds()
	after, err := leaseRequests(c.ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	res.perVerb = map[string]float64{}
	for verb, n := range after {
		res.perVerb[verb] = (n - before[verb]) / elapsed
	}
	for i, ticks := range agentCPU(t, c) {
		res.cpu = append(res.cpu, 100*(ticks-cpu0[i])/clockTicks/elapsed)
	}
	mem := &bgpBench{t: t, c: c}
	res.rss, res.anon = mem.rss("VmRSS"), mem.rss("RssAnon")
	for _, h := range c.n.Nodes {
		res.goMem = append(res.goMem, readGoMem(c, h.Name))
	}
	res.minVIPs, res.maxVIPs = spread(prev, c.allNodes())
}

// goMem is what an agent's Go runtime says of its memory, from its
// metrics (bytes; goroutines a count).
type goMem struct{ heap, stacks, goroutines float64 }

func readGoMem(c *cluster, node string) goMem {
	m := c.metrics(node, "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines")
	return goMem{heap: m[0], stacks: m[1], goroutines: m[2]}
}

func fmtGoMem(ms []goMem) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%.1f / %.1f / %.0f", m.heap/(1<<20), m.stacks/(1<<20), m.goroutines))
	}
	return strings.Join(parts, " · ")
}

// crashFailover kills the agent holding the most VIPs and pulls its cable,
// then waits until each of its VIPs is bound on exactly one other node.
func (res *scaleResult) crashFailover(t *testing.T, c *cluster, links map[string]*netlink.Handle) {
	holders := boundVIPs(t, links, res.row.services, nil)
	count := map[string]int{}
	for _, n := range holders {
		count[n]++
	}
	victim := ""
	for _, n := range c.allNodes() {
		if victim == "" || count[n] > count[victim] {
			victim = n
		}
	}
	var vips []netip.Addr
	for vip, n := range holders {
		if n == victim {
			vips = append(vips, vip)
		}
	}
	res.crashHeld = len(vips)
	res.crashFirst, res.crash, _ = crashUntilTakenOver(t, c, links, res.row.services, victim, vips)
}

// crashUntilTakenOver kills victim's agent and pulls its cable, then waits
// until each of vips (among the first n bench VIPs) is bound on exactly one
// other node: first is when the first one was, all when every one was
// (zero, with err, if not within a minute).
func crashUntilTakenOver(t *testing.T, c *cluster, links map[string]*netlink.Handle, n int, victim string, vips []netip.Addr) (first, all time.Duration, err error) {
	start := time.Now()
	c.crash(victim)
	skip := map[string]bool{victim: true}
	err = waitEvery(c.ctx, 20*time.Millisecond, time.Minute, func() bool {
		now := boundVIPs(t, links, n, skip)
		back := 0
		for _, vip := range vips {
			if now[vip] != "" {
				back++
			}
		}
		if back > 0 && first == 0 {
			first = time.Since(start)
		}
		return back == len(vips)
	})
	if err == nil {
		all = time.Since(start)
	}
	return first, all, err
}

// waitEvery polls cond every period until it holds or within passes.
func waitEvery(ctx context.Context, period, within time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// nodeLinks opens a netlink handle in every node's namespace.
func nodeLinks(t *testing.T, c *cluster) map[string]*netlink.Handle {
	out := map[string]*netlink.Handle{}
	for _, h := range c.n.Nodes {
		out[h.Name] = nsNetlink(t, h.NS)
	}
	return out
}

// boundVIPs maps each of the first n bench VIPs bound on exactly one node
// (skipping the nodes in skip) to that node.
func boundVIPs(t *testing.T, links map[string]*netlink.Handle, n int, skip map[string]bool) map[netip.Addr]string {
	t.Helper()
	on := map[netip.Addr][]string{}
	for node, h := range links {
		if skip[node] {
			continue
		}
		addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
		for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 5; try++ {
			addrs, err = h.AddrList(nil, netlink.FAMILY_V4) // the addresses changed while read
		}
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && bigVIPs.Contains(ip) {
				on[ip] = append(on[ip], node)
			}
		}
	}
	out := map[netip.Addr]string{}
	for i := range n {
		if nodes := on[bigVIP(i)]; len(nodes) == 1 {
			out[bigVIP(i)] = nodes[0]
		}
	}
	return out
}

func spread(holders map[netip.Addr]string, nodes []string) (lo, hi int) {
	count := map[string]int{}
	for _, n := range holders {
		count[n]++
	}
	var all []int
	for _, n := range nodes {
		all = append(all, count[n])
	}
	return slices.Min(all), slices.Max(all)
}

// leaseRequests reads the API server's own count of lease requests, summed
// per verb over codes and scopes.
func leaseRequests(ctx context.Context, cs kubernetes.Interface) (map[string]float64, error) {
	all, err := apiRequests(ctx, cs)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for k, v := range all {
		if k.resource == "leases" {
			out[k.verb] += v
		}
	}
	return out, nil
}

// request is one kind of API request the API server counts.
type request struct{ resource, subresource, verb string }

func (r request) String() string {
	if r.subresource != "" {
		return r.verb + " " + r.resource + "/" + r.subresource
	}
	return r.verb + " " + r.resource
}

// apiRequests reads the API server's own count of requests
// (apiserver_request_total), summed per resource, subresource and verb
// over codes, scopes and clients.
func apiRequests(ctx context.Context, cs kubernetes.Interface) (map[request]float64, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("API server /metrics: %w", err)
	}
	return parseRequests(string(raw))
}

func parseRequests(text string) (map[request]float64, error) {
	out := map[request]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		labelsPart, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("apiserver_request_total: malformed line %q", line)
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return nil, fmt.Errorf("apiserver_request_total: %q: %w", line, err)
		}
		out[request{label(labelsPart, "resource"), label(labelsPart, "subresource"), label(labelsPart, "verb")}] += v
	}
	return out, sc.Err()
}

func label(labels, name string) string {
	_, rest, ok := strings.Cut(","+labels, ","+name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100
// on every Linux the lab runs on).
const clockTicks = 100

// agentCPU reads utime+stime (ticks) of every node's agent, in node order.
func agentCPU(t *testing.T, c *cluster) []float64 {
	t.Helper()
	var out []float64
	for _, h := range c.n.Nodes {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.agents[h.Name].Pid()))
		if err != nil {
			t.Fatal(err)
		}
		// Fields after the ")" that ends the command name: state is the
		// first, utime the 12th, stime the 13th.
		_, rest, _ := strings.Cut(string(raw), ") ")
		f := strings.Fields(rest)
		if len(f) < 13 {
			t.Fatalf("short /proc/pid/stat: %q", raw)
		}
		u, err1 := strconv.ParseFloat(f[11], 64)
		s, err2 := strconv.ParseFloat(f[12], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("/proc/pid/stat: %q", raw)
		}
		out = append(out, u+s)
	}
	return out
}

func scaleDoc(results []scaleResult, window time.Duration, env []string, loadBefore, loadAfter string) string {
	var b strings.Builder
	b.WriteString("# bench-scale: Services per node count, per election mode\n\n")
	fmt.Fprintf(&b, "`make bench-scale`; agent settings beyond the lab's: `%s`; steady window %v; load average before %s, after %s.\n\n",
		strings.Join(env, " "), window, loadBefore, loadAfter)
	b.WriteString("| nodes | Services | creates (API) | first create → all bound on one node | lease req/s by verb (steady) | holder changes (steady) | agent RSS MiB (private) | heap MiB / stacks MiB / goroutines | agent CPU % | VIPs per node min/max | crash of busiest node (VIPs; first back) → all bound again |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		announced := fmtDur(r.announced)
		if r.announced == 0 {
			announced = fmt.Sprintf("not all in 2 min (%d/%d)", r.boundAtEnd, r.row.services)
		}
		crash := fmtDur(r.crash)
		if r.crash == 0 {
			crash = "not all in 1 min"
		}
		first := "none back"
		if r.crashFirst > 0 {
			first = "first " + fmtDur(r.crashFirst)
		}
		fmt.Fprintf(&b, "| %d | %d | %s | %s | %s | %d | %s | %s | %s | %d/%d | %s (%d; %s) |\n",
			r.row.nodes, r.row.services, fmtDur(r.api), announced, fmtVerbs(r.perVerb), r.changes,
			fmtRSS(r.rss, r.anon), fmtGoMem(r.goMem), fmtList(r.cpu, "%.1f"), r.minVIPs, r.maxVIPs, crash, r.crashHeld, first)
	}
	b.WriteString(`
- **bound**: a VIP counts once it is bound on exactly one node's eth0 (read over netlink every 50 ms; 20 ms after the crash; the crashed node is not read).
- **crash**: the agent holding the most VIPs is killed and its cable pulled; the time until every one of its VIPs is bound on exactly one other node, and (first) until the first is: the holder's Lease running out (node mode: a LeaseDuration after its last heartbeat, up to LeaseDuration/3 before the crash); the rest is the takeover itself.
- **lease req/s**: increase of the API server's ` + "`apiserver_request_total{resource=\"leases\"}`" + ` over the window, by verb (every client: the test itself sends none).
- **holder changes**: VIPs whose single holder changed (or that stopped being bound) between two 250 ms samples during the window; 0 means no flap.
- **CPU**: utime+stime of each agent over the window, in % of one core. **RSS**: VmRSS at the end of the window, and in brackets RssAnon, the agent's private memory; the rest (about 20 MiB; 29 MiB while the agent linked GoBGP, until 2026-12-03) is the binary's own file pages, shared page cache, mapped mostly by the Go runtime's package initialisation.
- **heap / stacks / goroutines**: the agent's own ` + "`go_memstats_heap_inuse_bytes`, `go_memstats_stack_inuse_bytes` and `go_goroutines`" + ` at the end of the window, per agent: where the private memory goes.
`)
	return b.String()
}

func fmtVerbs(m map[string]float64) string {
	var verbs []string
	for v := range m {
		verbs = append(verbs, v)
	}
	slices.Sort(verbs)
	var parts []string
	for _, v := range verbs {
		parts = append(parts, fmt.Sprintf("%s %.1f", v, m[v]))
	}
	return strings.Join(parts, ", ")
}

// fmtRSS lists each agent's RSS with its private part in brackets.
func fmtRSS(rss, anon []float64) string {
	var parts []string
	for i := range rss {
		parts = append(parts, fmt.Sprintf("%.0f (%.0f)", rss[i], anon[i]))
	}
	return strings.Join(parts, " / ")
}

func fmtList(v []float64, f string) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, fmt.Sprintf(f, x))
	}
	return strings.Join(parts, " / ")
}

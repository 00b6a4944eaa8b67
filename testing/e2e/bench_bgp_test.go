//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-lb/vigil/testing/lab"
)

// TestBenchBGP is `make bench-bgp`: it repeats the BGP lab scenarios of
// issue 9 and writes a table of medians, p90s and maxima, with how each
// figure is measured, to $VIGIL_BENCH_OUT. It only runs when that variable
// is set; VIGIL_BENCH_RUNS (default 10) sets the runs per scenario (the
// 1,000-VIP case runs about a third as often, at least once).
func TestBenchBGP(t *testing.T) {
	out := benchOut(t, "make bench-bgp")
	runs := benchRuns(t, 10)
	big := max(1, runs*3/10)
	loadBefore := loadAvg()
	s := bgpSamples{}
	t.Run("ecmp", func(t *testing.T) { benchECMP(t, runs, s) })
	t.Run("crash-hold", func(t *testing.T) { benchCrash(t, runs, false, s) })
	t.Run("crash-bfd", func(t *testing.T) { benchCrash(t, runs, true, s) })
	for i := range big {
		t.Run(fmt.Sprintf("1000vips-run%d", i), func(t *testing.T) { bench1000(t, s) })
	}
	if t.Failed() {
		return // no table from a partial run
	}
	doc := bgpBenchDoc(s, runs, big, loadBefore, loadAvg())
	t.Logf("\n%s", doc)
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}

// bgpSamples holds each scenario's figures: seconds, or MiB for RSS rows.
type bgpSamples map[string][]float64

func (s bgpSamples) dur(key string, d time.Duration) { s[key] = append(s[key], d.Seconds()) }

// Poll intervals of the router's FIB: a netlink dump of a few routes costs
// tens of microseconds, one of 1,000 ECMP routes about a millisecond.
const (
	pollFast = 2 * time.Millisecond
	pollBig  = 10 * time.Millisecond
)

// bgpBench is one BGP lab: nodes running vigil (every eligible node
// announces), a BIRD router, and netlink handles inside the router's
// namespace (to read its FIB) and the LAN's (to pull cables).
type bgpBench struct {
	t   *testing.T
	c   *cluster
	r   *lab.Router
	fib *netlink.Handle
	lan *netlink.Handle
	bfd bool
}

func newBGPBench(t *testing.T, nodes int, bfd bool) *bgpBench {
	t.Helper()
	peers := lab.RouterIPv4.String() + ":65001"
	if bfd {
		peers += ":::::true;100;100;3"
	}
	c := newCluster(t, nodes, "bgp_enable=true", "bgp_peers="+peers, "bgp_hold_time=9", "bgp_keepalive_interval=3",
		"vip_arp=false", "svc_election=false", "vigil_log_level=info")
	r, err := c.n.StartRouter(c.ctx, lab.RouterOptions{BFD: bfd})
	if err != nil {
		t.Fatal(err)
	}
	c.startAll()
	b := &bgpBench{t: t, c: c, r: r, fib: nsNetlink(t, r.Host.NS), lan: nsNetlink(t, c.n.LAN), bfd: bfd}
	b.waitSessions()
	return b
}

// nsNetlink opens a netlink handle whose sockets live in namespace ns.
func nsNetlink(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("open namespace %s: %v", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatalf("netlink in %s: %v", ns, err)
	}
	t.Cleanup(h.Close)
	return h
}

// waitSessions waits until the router shows a BGP session Established with
// every node (and, with BFD, a BFD session Up with each).
func (b *bgpBench) waitSessions() {
	b.t.Helper()
	want := len(b.c.n.Nodes)
	var out string
	err := lab.WaitFor(b.c.ctx, 30*time.Second, func() bool {
		out, _ = b.r.Birdc(b.c.ctx, "show", "protocols")
		if strings.Count(out, "Established") != want {
			return false
		}
		if b.bfd {
			out, _ = b.r.Birdc(b.c.ctx, "show", "bfd", "sessions")
			return strings.Count(out, " Up ") >= want
		}
		return true
	})
	if err != nil {
		b.t.Fatalf("router: not %d sessions up after 30s:\n%s", want, out)
	}
}

// routes dumps the router's IPv4 FIB (main table): destination -> sorted
// next hops.
func (b *bgpBench) routes() (map[netip.Prefix][]netip.Addr, error) {
	rs, err := b.fib.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{}, 0)
	if err != nil {
		return nil, err // ErrDumpInterrupted too: the next sample retries
	}
	m := make(map[netip.Prefix][]netip.Addr, len(rs))
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		p, ok := prefixOf(r.Dst)
		if !ok {
			continue
		}
		var hops []netip.Addr
		for _, gw := range append([]net.IP{r.Gw}, gateways(r.MultiPath)...) {
			if a, ok := netip.AddrFromSlice(gw); ok {
				hops = append(hops, a.Unmap())
			}
		}
		slices.SortFunc(hops, netip.Addr.Compare)
		m[p] = hops
	}
	return m, nil
}

func gateways(nhs []*netlink.NexthopInfo) []net.IP {
	var out []net.IP
	for _, nh := range nhs {
		out = append(out, nh.Gw)
	}
	return out
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

// addrs are the LAN addresses of the named nodes, sorted.
func (b *bgpBench) addrs(nodes ...string) []netip.Addr {
	var out []netip.Addr
	for _, n := range nodes {
		out = append(out, b.c.node(n).IPv4)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// until samples the router's FIB every interval until cond holds and
// returns the time of that sample, measured from start.
func (b *bgpBench) until(start time.Time, every, within time.Duration, what string, cond func(map[netip.Prefix][]netip.Addr) bool) time.Duration {
	b.t.Helper()
	tick := time.NewTicker(every)
	defer tick.Stop()
	deadline := time.Now().Add(within)
	for {
		m, err := b.routes()
		if err == nil && cond(m) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("router: %s not reached within %v (last error %v)", what, within, err)
		}
		select {
		case <-b.c.ctx.Done():
			b.t.Fatalf("router: %s: %v", what, b.c.ctx.Err())
		case <-tick.C:
		}
	}
}

// untilHops waits until the router's route for vip goes via exactly the
// given nodes (none: no route) and returns when, from start.
func (b *bgpBench) untilHops(start time.Time, vip netip.Addr, within time.Duration, nodes ...string) time.Duration {
	b.t.Helper()
	want := b.addrs(nodes...)
	p := netip.PrefixFrom(vip, 32)
	return b.until(start, pollFast, within, fmt.Sprintf("route %s via %v", vip, nodes), func(m map[netip.Prefix][]netip.Addr) bool {
		return slices.Equal(m[p], want)
	})
}

// restart starts the node's agent again and waits for its sessions.
func (b *bgpBench) restart(node string) {
	b.t.Helper()
	b.c.startAgent(node)
	b.c.waitReady(node)
	b.waitSessions()
}

func without(nodes []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == drop })
}

// benchECMP: 3 nodes, sessions up. Per run: a Service is created (its
// EndpointSlice already there) -> ECMP route via all nodes; one agent gets
// SIGTERM -> its path gone. Then Local endpoint moves.
func benchECMP(t *testing.T, runs int, s bgpSamples) {
	b := newBGPBench(t, 3, false)
	all := b.c.allNodes()
	for i := range runs {
		name, vip := fmt.Sprintf("web%d", i), netip.AddrFrom4([4]byte{198, 18, 1, byte(1 + i%250)})
		b.c.setEndpoints(name, all...)
		b.waitSessions()
		start := time.Now()
		b.c.createService(name, []string{vip.String()})
		s.dur("create", b.untilHops(start, vip, 10*time.Second, all...))

		victim := all[i%len(all)]
		start = time.Now()
		if err := b.c.agents[victim].Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		s.dur("term", b.untilHops(start, vip, 5*time.Second, without(all, victim)...))
		b.waitExit(victim)
		b.restart(victim)
		if err := b.c.cs.CoreV1().Services(b.c.ns).Delete(b.c.ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		b.untilHops(time.Now(), vip, 10*time.Second)
	}
	benchLocal(b, runs, s)
}

func (b *bgpBench) waitExit(node string) {
	b.t.Helper()
	select {
	case <-b.c.agents[node].Done():
	case <-time.After(10 * time.Second):
		b.t.Fatalf("%s's agent still running 10s after SIGTERM", node)
	}
}

// benchLocal: a Local Service with its one endpoint on node2; per run the
// endpoint moves to node3 (timed) and back (not timed).
func benchLocal(b *bgpBench, runs int, s bgpSamples) {
	vip := netip.MustParseAddr("198.18.2.1")
	b.c.setEndpoints("loc", "node2")
	b.c.createService("loc", []string{vip.String()}, withLocal())
	b.untilHops(time.Now(), vip, 15*time.Second, "node2")
	for range runs {
		start := b.moveEndpoint("loc", "node3")
		s.dur("local", b.untilHops(start, vip, 5*time.Second, "node3"))
		start = b.moveEndpoint("loc", "node2")
		b.untilHops(start, vip, 5*time.Second, "node2")
	}
}

// moveEndpoint rewrites the Service's EndpointSlice (made by setEndpoints)
// so its one ready endpoint is on node, and returns the time just before
// the Update call.
func (b *bgpBench) moveEndpoint(service, node string) time.Time {
	b.t.Helper()
	eps := b.c.cs.DiscoveryV1().EndpointSlices(b.c.ns)
	cur, err := eps.Get(b.c.ctx, service+"-vigil-e2e", metav1.GetOptions{})
	if err != nil {
		b.t.Fatal(err)
	}
	cur.Endpoints = []discoveryv1.Endpoint{readyEndpoint(fmt.Sprintf("10.244.9.%d", b.c.node(node).IPv4.As4()[3]), node)}
	start := time.Now()
	if _, err := eps.Update(b.c.ctx, cur, metav1.UpdateOptions{}); err != nil {
		b.t.Fatal(err)
	}
	return start
}

func readyEndpoint(addr, node string) discoveryv1.Endpoint {
	ready := true
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}, NodeName: &node}
}

// benchCrash: 2 nodes. Per run, at a random point of the keepalive (or
// BFD) period, one node's cable is pulled and then its agent killed; the
// clock starts at the cable pull and stops when the router's route goes via
// the other node only. The cable is plugged back and the agent restarted.
func benchCrash(t *testing.T, runs int, bfd bool, s bgpSamples) {
	b := newBGPBench(t, 2, bfd)
	key, jitter, within := "crash-hold", 3*time.Second, 15*time.Second
	if bfd {
		key, jitter, within = "crash-bfd", 100*time.Millisecond, 3*time.Second
	}
	all := b.c.allNodes()
	vip := netip.MustParseAddr("198.18.2.2")
	b.c.setEndpoints("web", all...)
	b.c.createService("web", []string{vip.String()})
	for i := range runs {
		b.untilHops(time.Now(), vip, 15*time.Second, all...)
		victim := all[i%2]
		time.Sleep(rand.N(jitter))
		start := time.Now()
		b.pullCable(victim)
		b.c.agents[victim].Kill()
		s.dur(key, b.untilHops(start, vip, within, without(all, victim)...))
		if err := b.c.n.RestoreLAN(b.c.ctx, b.c.node(victim)); err != nil {
			t.Fatal(err)
		}
		b.restart(victim)
	}
}

// pullCable sets the node's bridge port down over netlink (what
// lab.CutLAN does, without the cost of running ip).
func (b *bgpBench) pullCable(node string) {
	b.t.Helper()
	l, err := b.lan.LinkByName("p-" + node)
	if err == nil {
		err = b.lan.LinkSetDown(l)
	}
	if err != nil {
		b.t.Fatalf("pull %s's cable: %v", node, err)
	}
}

// The 1,000 VIPs: 198.18.4.1 … 198.18.7.232, each its own /32.
const bigN = 1000

var bigVIPs = netip.MustParsePrefix("198.18.4.0/22")

func bigVIP(i int) netip.Addr {
	n := i + 1
	return netip.AddrFrom4([4]byte{198, 18, byte(4 + n/256), byte(n % 256)})
}

func bigName(i int) string { return fmt.Sprintf("svc%04d", i) }

// bench1000: a fresh 3-node lab; 1,000 EndpointSlices made first (not
// timed), then 1,000 Services created by concurrent Create calls (one API
// call per Service); the clock stops when the router's FIB holds all 1,000
// /32s, each ECMP via every node. Agent RSS idle, at that moment, and the
// peak 5 s later.
func bench1000(t *testing.T, s bgpSamples) {
	b := newBGPBench(t, 3, false)
	cs := unthrottledClient(t)
	if err := parallel(bigN, func(i int) error { return createBigSlice(b.c, cs, i) }); err != nil {
		t.Fatal(err)
	}
	s["rss-idle"] = append(s["rss-idle"], b.rss("VmRSS")...)
	first := time.Now()
	if err := parallel(bigN, func(i int) error { return createBigService(b.c, cs, i) }); err != nil {
		t.Fatal(err)
	}
	api := time.Since(first)
	via := b.addrs(b.c.allNodes()...)
	d := b.until(first, pollBig, 2*time.Minute, "1,000 ECMP routes", func(m map[netip.Prefix][]netip.Addr) bool {
		return countVia(m, bigVIPs, via) == bigN
	})
	s["rss-1000"] = append(s["rss-1000"], b.rss("VmRSS")...)
	s["anon-1000"] = append(s["anon-1000"], b.rss("RssAnon")...)
	s["file-1000"] = append(s["file-1000"], b.rss("RssFile")...)
	s.dur("1000-api", api)
	s.dur("1000-first", d)
	s.dur("1000-last", d-api)
	time.Sleep(5 * time.Second)
	s["hwm-1000"] = append(s["hwm-1000"], b.rss("VmHWM")...)
	t.Logf("1,000 routes: API %v, from first create %v, from last %v", api, d, d-api)
	s.dur("1000-cold", b.coldStart(via))
}

// coldStart stops every agent (their routes go), then starts them all again
// with the 1,000 Services in place: the time from the first start to all
// 1,000 routes ECMP via every node — listing, sessions and routes, with no
// API server work in the way.
func (b *bgpBench) coldStart(via []netip.Addr) time.Duration {
	b.t.Helper()
	nodes := b.c.allNodes()
	for _, n := range nodes {
		if err := b.c.agents[n].Signal(syscall.SIGTERM); err != nil {
			b.t.Fatal(err)
		}
	}
	for _, n := range nodes {
		b.waitExit(n)
	}
	b.until(time.Now(), pollBig, time.Minute, "no routes after SIGTERM", func(m map[netip.Prefix][]netip.Addr) bool {
		return !anyIn(m, bigVIPs)
	})
	start := time.Now()
	for _, n := range nodes {
		b.c.startAgent(n)
	}
	return b.until(start, pollBig, 2*time.Minute, "1,000 ECMP routes after a cold start", func(m map[netip.Prefix][]netip.Addr) bool {
		return countVia(m, bigVIPs, via) == bigN
	})
}

// anyIn says whether any route's destination lies inside p.
func anyIn(m map[netip.Prefix][]netip.Addr, p netip.Prefix) bool {
	for dst := range m {
		if dst.Bits() >= p.Bits() && p.Contains(dst.Addr()) {
			return true
		}
	}
	return false
}

// countVia counts the /32 routes inside p whose next hops are exactly via.
func countVia(m map[netip.Prefix][]netip.Addr, p netip.Prefix, via []netip.Addr) int {
	n := 0
	for dst, hops := range m {
		if dst.Bits() == 32 && p.Contains(dst.Addr()) && slices.Equal(hops, via) {
			n++
		}
	}
	return n
}

// unthrottledClient is an admin client without client-side rate limiting
// (the shared one allows 200 requests/s, which would time the limiter).
func unthrottledClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	cfg, err := lab.RESTConfig(cp.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS = -1
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// parallel runs f(0) … f(n-1) on 16 workers and joins the errors.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				errs[i] = f(i)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func createBigSlice(c *cluster, cs kubernetes.Interface, i int) error {
	node := c.n.Nodes[i%len(c.n.Nodes)].Name
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: bigName(i) + "-vigil-e2e", Namespace: c.ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: bigName(i)},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{readyEndpoint(fmt.Sprintf("10.245.%d.%d", i/250, 1+i%250), node)},
	}
	_, err := cs.DiscoveryV1().EndpointSlices(c.ns).Create(c.ctx, slice, metav1.CreateOptions{})
	return err
}

// createBigService creates Service i for its VIP; no node ports (1,000
// Services per run would exhaust the lab's node port range in three runs).
func createBigService(c *cluster, cs kubernetes.Interface, i int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: bigName(i), Namespace: c.ns},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			Selector:                      map[string]string{"app": bigName(i)},
			LoadBalancerIP:                bigVIP(i).String(),
			AllocateLoadBalancerNodePorts: new(false),
		},
	}
	withPorts(8080)(svc)
	_, err := cs.CoreV1().Services(c.ns).Create(c.ctx, svc, metav1.CreateOptions{})
	return err
}

// rss reads a memory field (VmRSS, VmHWM) of every agent, in MiB.
func (b *bgpBench) rss(field string) []float64 {
	b.t.Helper()
	var out []float64
	for _, h := range b.c.n.Nodes {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.c.agents[h.Name].Pid()))
		if err != nil {
			b.t.Fatal(err)
		}
		// vigil, or vigil-bgp (vigil with its BGP speaker) once a manager
		// with bgp_enable has exec'd into it.
		if !strings.Contains(string(raw), "Name:\tvigil\n") && !strings.Contains(string(raw), "Name:\tvigil-bgp\n") {
			b.t.Fatalf("pid %d is not %s's vigil:\n%s", b.c.agents[h.Name].Pid(), h.Name, raw)
		}
		kib, err := statusKiB(string(raw), field)
		if err != nil {
			b.t.Fatalf("%s's agent: %v", h.Name, err)
		}
		out = append(out, kib/1024)
	}
	return out
}

// statusKiB parses "Field:   1234 kB" out of /proc/<pid>/status.
func statusKiB(status, field string) (float64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		return strconv.ParseFloat(f[0], 64)
	}
	return 0, fmt.Errorf("no %s in /proc/<pid>/status", field)
}

func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}

var bgpBenchRows = []struct{ key, what, unit, kubeVIP, target string }{
	{"create", "Service created → ECMP route via all 3 nodes (sessions up)", "s", "0.03 s", "≤ 0.05 s"},
	{"term", "SIGTERM of one agent → its path gone", "s", "0.016 s", "≤ 0.02 s"},
	{"local", "Local endpoint node2 → node3 → route via node3 only", "s", "0.014 s", "≤ 0.05 s"},
	{"crash-hold", "crash (cable pulled, agent killed) → path gone, hold time 9 s", "s", "7.9 s", "≤ 9 s (the hold time)"},
	{"crash-bfd", "crash → path gone, BFD 100 ms × 3", "s", "0.31 s", "≤ 0.35 s"},
	{"1000-api", "1,000 Service Creates (first sent → last answered)", "s", "—", "—"},
	{"1000-first", "1,000 Services → all 1,000 ECMP routes on the router, from the first Create", "s", "—", "≤ 3 s"},
	{"1000-last", "… from the last Create answered", "s", "—", "—"},
	{"1000-cold", "1,000 Services in place, all 3 agents started → all 1,000 ECMP routes", "s", "—", "≤ 3 s"},
	{"rss-idle", "agent RSS, sessions up, no Service (each agent)", "MiB", "—", "—"},
	{"rss-1000", "agent RSS at 1,000 routes (each agent)", "MiB", "—", "≤ 60 MiB"},
	{"anon-1000", "… of which private memory (RssAnon: heap, stacks)", "MiB", "—", "—"},
	{"file-1000", "… of which the binary's pages mapped from the page cache (RssFile, shared)", "MiB", "—", "—"},
	{"hwm-1000", "agent peak RSS (VmHWM) 5 s after (each agent)", "MiB", "—", "—"},
}

const bgpBenchHow = `# BGP benchmark (` + "`make bench-bgp`" + `)

Lab: node namespaces running ` + "`vigil manager`" + ` configured by kube-vip's variables
(` + "`bgp_enable=true bgp_peers=198.18.0.254:65001 bgp_hold_time=9 bgp_keepalive_interval=3 svc_election=false vip_arp=false`" + `,
info logs: every eligible node announces, no election) peering (eBGP, AS 65000 → 65001)
with BIRD 2 in a router namespace on the lab LAN, whose kernel protocol has
` + "`merge paths on`" + `, so equal routes from the nodes become one ECMP route in the
router's kernel FIB. The API server is the lab's own kube-apiserver + etcd; there is
no controller manager, so the benchmark writes the EndpointSlices.

Every figure is read from the router's kernel FIB (what forwards the traffic), not
from BIRD: the benchmark dumps the FIB over netlink from inside the router's
namespace every 2 ms (every 10 ms in the 1,000-route case), and a figure is the time
from the action to the first sample that shows the awaited state, so it is late by at
most one interval plus one dump (well under 1 ms for a few routes).

- **create**: 3 nodes; the router shows all sessions Established (` + "`birdc show protocols`" + `)
  and the Service's EndpointSlice (one ready endpoint per node) exists; clock from
  just before the Service Create call to the /32 being ECMP via all 3 nodes.
- **SIGTERM**: clock from kill(SIGTERM) of one agent (node1, node2, node3 in turn) to
  the route being ECMP via exactly the other two; the agent is restarted and its
  session comes back before the next run.
- **Local move**: a ` + "`externalTrafficPolicy: Local`" + ` Service whose one endpoint is on node2;
  clock from just before the EndpointSlice Update that puts it on node3 to the route
  being via node3 only (node3's path added and node2's withdrawn). Moved back between runs.
- **crash**: 2 nodes; at a random point of the keepalive period (3 s; BFD: 100 ms)
  node1 or node2 (in turn) has its bridge port set down over netlink (the cable: from
  then on it sends nothing, not even a FIN) and then its agent is SIGKILLed; clock from
  the cable pull to the route being via the other node only. Hold time 9 s on both
  sides; BFD is BIRD's ` + "`bfd`" + ` protocol at 100 ms × 3 and
  ` + "`bgp_peers=198.18.0.254:65001:::::true;100;100;3`" + `. Cable plugged back and agent
  restarted between runs.
- **1,000 VIPs**: a fresh 3-node lab per run; 1,000 EndpointSlices are created first
  (not timed), then 1,000 LoadBalancer Services (each its own /32 in 198.18.4.0/22 by
  ` + "`spec.loadBalancerIP`" + `, one API call each, 16 concurrent Create calls, no client-side
  rate limit); clock to the router's FIB holding 1,000 /32 routes each ECMP via all 3
  nodes, from the first Create sent and from the last Create answered. The first
  figure includes the lab API server accepting 1,000 Creates (shown on its own row)
  on the same CPUs as the agents; the second is vigil's own lag. Then every agent gets
  SIGTERM (all routes go) and all three are started again with the 1,000 Services in
  place (**cold start**): clock from the first start to all 1,000 routes ECMP again —
  the API list, the BGP sessions and the routes, with no API writes in the way. GoBGP dials a
  configured peer for the first time 1.5–2 s after it is added (its connect loop
  waits 0.75–1 × a fixed 2 s before the first attempt), so no cold start beats that;
  routes are queued meanwhile. The three agents share the lab's 2 CPUs and the
  kernel's one RTNL lock (every VIP is an address on each node's lo), which three
  real nodes would not. Agents keep their journals on tmpfs, as ` + "`/run/vigil`" + ` is on a node.
- **RSS**: VmRSS from ` + "`/proc/<pid>/status`" + ` of each agent process (vigil-bgp, the
  build of vigil with its BGP speaker, which ` + "`vigil manager`" + ` execs into with bgp_enable; one sample per
  agent): with sessions up before any Service, and at the moment the 1,000th route is
  complete, split into RssAnon (the process's own memory: heap, stacks) and RssFile
  (pages of the executable mapped from the page cache: shared, and reclaimable by
  the kernel); VmHWM (the process's peak) 5 s later. The binary is run from the
  repository's bin/ on disk (from a tmpfs, every page of it counts as resident).

kube-vip's figures are its BGP mode measured against BIRD 2 in this kind of lab
(issue 9); the targets are issue 9's.

`

// bgpBenchDoc renders the explanation, the machine, and the table.
func bgpBenchDoc(s bgpSamples, runs, big int, loadBefore, loadAfter string) string {
	var b strings.Builder
	b.WriteString(bgpBenchHow)
	fmt.Fprintf(&b, "Run %s: %d runs per scenario, %d of the 1,000-VIP case; %d CPUs, load average %s before, %s after.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runs, big, runtime.NumCPU(), loadBefore, loadAfter)
	b.WriteString("| scenario | samples | median | p90 | max | kube-vip | target |\n|---|---|---|---|---|---|---|\n")
	for _, r := range bgpBenchRows {
		v := slices.Clone(s[r.key])
		if len(v) == 0 {
			continue
		}
		slices.Sort(v)
		p90 := v[max(0, (len(v)*9+9)/10-1)]
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s |\n", r.what, len(v),
			fmtBench(v[len(v)/2], r.unit), fmtBench(p90, r.unit), fmtBench(v[len(v)-1], r.unit), r.kubeVIP, r.target)
	}
	return b.String()
}

func fmtBench(v float64, unit string) string {
	switch {
	case unit == "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case v < 1:
		return fmt.Sprintf("%.1f ms", v*1000)
	default:
		return fmt.Sprintf("%.2f s", v)
	}
}

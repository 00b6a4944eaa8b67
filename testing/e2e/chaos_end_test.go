//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/testing/chaos/checker"
)

// finish heals everything, waits one lease, and checks for leftovers of
// the Services deleted during the campaign; then deletes every Service and
// checks that nothing at all is left (invariant 6).
func (k *campaign) finish() {
	k.logf("schedule over: waiting for every undo step")
	k.faults.Wait()
	k.settle()
	k.leftovers("after the campaign", k.kept())
	k.mu.Lock()
	dhcpDown := k.dhcpDown
	k.mu.Unlock()
	if dhcpDown {
		k.t.Errorf("dnsmasq is not running at the end")
	}
	for _, s := range k.sortedSvcs() {
		if err := k.remove(s); err != nil {
			k.t.Errorf("%v", err)
		}
		delete(k.svcs, s.name)
	}
	k.logf("deleted every Service")
	k.settle()
	k.leftovers("after deleting every Service", nil)
	k.stopChecker()
}

// settle waits LeaseDuration + 1 s and, on a busy machine, until the node
// state stops changing (at most 10 s more).
func (k *campaign) settle() {
	time.Sleep(chaosLease + time.Second)
	prev := fmt.Sprint(k.chk.Held())
	for range 10 {
		time.Sleep(time.Second)
		cur := fmt.Sprint(k.chk.Held())
		if cur == prev {
			return
		}
		prev = cur
	}
}

func (k *campaign) sortedSvcs() []*chaosSvc {
	var out []*chaosSvc
	for _, n := range sortedKeys(k.svcs) {
		out = append(out, k.svcs[n])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// kept is what the existing Services may still have: their names and every
// address they ask for or the API shows for them.
type keptSet struct {
	names map[string]bool
	addrs map[netip.Addr]bool
	upnp  map[netip.Addr]bool
	dhcp  map[netip.Addr]bool
}

func (k *campaign) kept() *keptSet {
	ks := &keptSet{names: map[string]bool{}, addrs: map[netip.Addr]bool{}, upnp: map[netip.Addr]bool{}, dhcp: map[netip.Addr]bool{}}
	api := map[string]checker.APIService{}
	if l, err := k.apiServices(k.ctx); err == nil {
		for _, s := range l {
			api[s.Name] = s
		}
	} else {
		k.t.Errorf("list Services at the end: %v", err)
	}
	for name, s := range k.svcs {
		ks.names[name] = true
		addrs := append(append(append([]netip.Addr(nil), s.addrs...), api[name].Ingress...), api[name].Assigned...)
		for _, a := range addrs {
			ks.addrs[a] = true
			ks.upnp[a] = ks.upnp[a] || (s.kind == "upnp" && !s.ignored)
			ks.dhcp[a] = ks.dhcp[a] || s.kind == "dhcp"
		}
	}
	return ks
}

// leftovers records as violations every VIP, link, route, Service Lease,
// UPnP mapping and DHCP lease that no existing Service accounts for (ks nil:
// no Service exists).
func (k *campaign) leftovers(when string, ks *keptSet) {
	if ks == nil {
		ks = &keptSet{names: map[string]bool{}, addrs: map[netip.Addr]bool{}, upnp: map[netip.Addr]bool{}, dhcp: map[netip.Addr]bool{}}
	}
	// A clean-up is bounded, not instant: a deleted Service's VIP and Lease
	// may wait for its UPnP forwards to be deleted (at most 3 s) behind the
	// agent's queue of other deletions. What is still there after
	// leftoverGrace is left behind.
	start := time.Now()
	found := k.findLeftovers(ks)
	for len(found) > 0 && time.Since(start) < leftoverGrace {
		time.Sleep(time.Second)
		found = k.findLeftovers(ks)
	}
	for _, f := range found {
		k.chk.Record(checker.Violation{Kind: checker.Leftover, Subject: when, Detail: f, Start: now(), End: now()})
	}
	k.logf("leftover check %s: %d found (looked for %v)", when, len(found), time.Since(start).Round(time.Millisecond))
}

// leftoverGrace bounds how long after settling a clean-up may still be
// under way.
const leftoverGrace = 10 * time.Second

// findLeftovers lists what no existing Service accounts for, now.
func (k *campaign) findLeftovers(ks *keptSet) []string {
	var found []string
	snap, err := k.nsS.Snapshot()
	if err != nil {
		k.t.Fatal(err)
	}
	for _, l := range checker.Leftovers(k.base, snap) {
		if !ks.accountsFor(l) {
			found = append(found, l)
		}
	}
	found = append(found, k.leftoverRoutes(ks)...)
	found = append(found, k.leftoverLeases(ks)...)
	found = append(found, k.leftoverMappings(ks)...)
	return append(found, k.leftoverDHCP(ks)...)
}

// accountsFor: a VIP of an existing Service, or any macvlan or route while
// DHCP Services exist (their links and routes come and go with them).
func (ks *keptSet) accountsFor(leftover string) bool {
	for a := range ks.addrs {
		if strings.HasSuffix(leftover, "address "+a.String()) {
			return true
		}
	}
	hasDHCP := false
	for _, d := range ks.dhcp {
		hasDHCP = hasDHCP || d
	}
	return hasDHCP && !strings.Contains(leftover, ": address ")
}

// leftoverRoutes lists the router's host routes for addresses no existing
// Service has.
func (k *campaign) leftoverRoutes(ks *keptSet) []string {
	routes, err := k.rtS.Routes()
	if err != nil {
		return []string{fmt.Sprintf("list router routes: %v", err)}
	}
	var out []string
	for _, a := range slices.SortedFunc(maps.Keys(routes), netip.Addr.Compare) {
		if !ks.addrs[a] {
			out = append(out, fmt.Sprintf("router: route %s via %v", a, routes[a]))
		}
	}
	return out
}

func (k *campaign) leftoverLeases(ks *keptSet) []string {
	l, err := k.c.cs.CoordinationV1().Leases(k.c.ns).List(k.ctx, metav1.ListOptions{})
	if err != nil {
		return []string{fmt.Sprintf("list Leases: %v", err)}
	}
	var out []string
	for _, le := range l.Items {
		svc, ok := strings.CutPrefix(le.Name, "kubevip-")
		if !ok || ks.names[svc] {
			continue
		}
		holder := "released"
		if h := le.Spec.HolderIdentity; h != nil && *h != "" {
			holder = "still held by " + *h
		}
		out = append(out, fmt.Sprintf("Lease %s of a deleted Service (%s)", le.Name, holder))
	}
	return out
}

func (k *campaign) leftoverMappings(ks *keptSet) []string {
	ms, err := k.c.n.Mappings(k.ctx)
	if err != nil {
		return []string{fmt.Sprintf("list UPnP mappings: %v", err)}
	}
	var out []string
	for _, m := range ms {
		if !ks.upnp[m.Internal.Addr()] {
			out = append(out, fmt.Sprintf("UPnP mapping %s %d -> %s (%s)", m.Proto, m.ExternalPort, m.Internal, m.Description))
		}
	}
	return out
}

func (k *campaign) leftoverDHCP(ks *keptSet) []string {
	ls, err := k.c.n.Leases()
	if err != nil {
		return []string{fmt.Sprintf("read DHCP leases: %v", err)}
	}
	k.mu.Lock()
	lost := append([]netip.Addr(nil), k.lostDHCP...)
	k.mu.Unlock()
	var out []string
	for _, l := range ls {
		if !ks.dhcp[l.IP] && !slices.Contains(lost, l.IP) {
			out = append(out, fmt.Sprintf("DHCP lease %s (%s) not released", l.IP, l.MAC))
		}
	}
	return out
}

// report prints the campaign's report and timeline, writes the report to
// VIGIL_CHAOS_REPORT when set, and fails the test on any violation.
func (k *campaign) report(start time.Time) {
	vs := k.chk.Violations()
	run := checker.Run{Seed: k.cfg.Seed, Nodes: k.cfg.Nodes, Services: k.initial, Mode: k.mode(),
		Started: start, Duration: k.cfg.Duration,
		Replay: fmt.Sprintf("make chaos SEED=%d DURATION=%v NODES=%d MODE_ENV='%s'", k.cfg.Seed, k.cfg.Duration, k.cfg.Nodes, strings.Join(k.cfg.Env, " "))}
	rep := checker.Report(run, k.chk.FaultCounts(), vs, k.chk.Gaps())
	k.mu.Lock()
	timeline := strings.Join(k.timeline, "\n")
	k.mu.Unlock()
	k.t.Logf("timeline:\n%s", timeline)
	k.t.Logf("\n%s", rep)
	if k.cfg.Report != "" {
		if err := os.WriteFile(k.cfg.Report, []byte(rep), 0o644); err != nil {
			k.t.Errorf("write report: %v", err)
		}
	}
	for _, v := range vs {
		k.t.Errorf("violation: %s", v)
	}
}

package checker

import (
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	t0  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	vip = netip.MustParseAddr("198.18.0.50")
	v6  = netip.MustParseAddr("fd00:1ab::50")
)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// step is one event of a synthetic stream fed to a checker; a stream is
// fed in time order (steps at one time in the order given).
type step struct {
	ms int
	f  func(c *Checker)
}

func feed(c *Checker, steps []step) {
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].ms < steps[j].ms })
	for _, s := range steps {
		s.f(c)
	}
}

func want(ms int, s Service) step  { return step{ms, func(c *Checker) { c.Want(at(ms), s) }} }
func forget(ms int, n string) step { return step{ms, func(c *Checker) { c.Forget(at(ms), n) }} }
func holders(ms int, by map[string][]netip.Addr) step {
	return step{ms, func(c *Checker) { c.Holders(at(ms), by) }}
}
func answers(ms int, r map[netip.Addr][]string) step {
	return step{ms, func(c *Checker) { c.Answers(at(ms), r) }}
}
func status(ms int, l ...APIService) step { return step{ms, func(c *Checker) { c.Status(at(ms), l) }} }
func api(ms int, up bool) step            { return step{ms, func(c *Checker) { c.APIState(at(ms), up) }} }

// faults are named in the test; ids maps the names to the checker's ids.
func faultOn(ms int, ids map[string]int, name, kind string, scope Scope) step {
	return step{ms, func(c *Checker) { ids[name] = c.FaultStarted(at(ms), kind, scope) }}
}
func heal(ms int, ids map[string]int, name string) step {
	return step{ms, func(c *Checker) { c.FaultHealed(at(ms), ids[name]) }}
}

// every repeats f every 100 ms in [from, to).
func every(from, to int, f func(ms int) step) []step {
	var out []step
	for ms := from; ms < to; ms += 100 {
		out = append(out, f(ms))
	}
	return out
}

func answered(by ...string) func(int) step {
	return func(ms int) step { return answers(ms, map[netip.Addr][]string{vip: by}) }
}

type got struct {
	Kind    Kind
	Subject string
	Start   int // ms after t0
	End     int // -1: still open
}

func summarise(vs []Violation) []got {
	var out []got
	for _, v := range vs {
		end := -1
		if !v.End.IsZero() {
			end = int(v.End.Sub(t0).Milliseconds())
		}
		out = append(out, got{v.Kind, v.Subject, int(v.Start.Sub(t0).Milliseconds()), end})
	}
	return out
}

func concat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func web(announce bool) Service {
	return Service{Name: "web", Addrs: []netip.Addr{vip}, Announce: announce, Managed: true}
}

func TestChecker(t *testing.T) {
	ids := map[string]int{}
	tests := []struct {
		name  string
		steps []step
		want  []got
	}{{
		name: "one holder answering is fine",
		steps: concat([]step{want(0, web(true))},
			every(0, 10000, func(ms int) step { return holders(ms, map[string][]netip.Addr{"node1": {vip}}) }),
			every(0, 10000, answered("node1"))),
	}, {
		name: "two holders in netlink open and close an episode",
		steps: []step{
			holders(100, map[string][]netip.Addr{"node1": {vip}}),
			holders(200, map[string][]netip.Addr{"node1": {vip}, "node2": {vip, v6}}),
			holders(300, map[string][]netip.Addr{"node1": {vip}, "node2": {vip}}),
			holders(400, map[string][]netip.Addr{"node2": {vip}}),
		},
		want: []got{{TwoHolders, "198.18.0.50", 200, 400}},
	}, {
		name:  "two answerers in one round",
		steps: []step{answers(100, map[netip.Addr][]string{vip: {"node1", "node1", "node3"}}), answers(200, map[netip.Addr][]string{vip: {"node3"}})},
		want:  []got{{TwoHolders, "198.18.0.50", 100, 200}},
	}, {
		name: "unanswered right after a change is within the grace",
		steps: concat([]step{want(0, web(true))},
			every(0, 5900, func(ms int) step { return answers(ms, nil) }),
			every(5900, 7000, answered("node2"))),
	}, {
		name: "unanswered past LeaseDuration+1s after the change",
		steps: concat([]step{want(0, web(true))},
			every(0, 6500, func(ms int) step { return answers(ms, nil) }),
			every(6500, 7000, answered("node2"))),
		want: []got{{NotAnnounced, "web", 6000, 6500}},
	}, {
		name: "no check while a touching fault is active; grace runs from the heal",
		steps: concat([]step{want(0, web(true))},
			every(0, 1000, answered("node1")),
			[]step{faultOn(1000, ids, "kill", "agent-sigkill", Scope{Node: "node1"})},
			every(1000, 30000, func(ms int) step { return answers(ms, nil) }),
			[]step{heal(20000, ids, "kill")},
			every(30000, 31000, answered("node2"))),
		want: []got{{NotAnnounced, "web", 26000, 30000}},
	}, {
		name: "a fault on a node that cannot hold the Service does not touch it",
		steps: concat([]step{want(0, Service{Name: "web", Addrs: []netip.Addr{vip}, Announce: true, Managed: true, Eligible: []string{"node2"}})},
			every(0, 7000, answered("node2")),
			[]step{faultOn(7000, ids, "cut", "lan-cut", Scope{Node: "node1"})},
			every(7000, 7600, func(ms int) step { return answers(ms, nil) })),
		want: []got{{NotAnnounced, "web", 7500, -1}},
	}, {
		name: "a BGP VIP is announced by its route on the router, not by ARP",
		steps: concat([]step{want(0, web(true))},
			every(0, 7000, func(ms int) step {
				return step{ms, func(c *Checker) { c.Routes(at(ms), map[netip.Addr][]string{vip: {"node1", "node2"}}) }}
			}),
			every(0, 8000, func(ms int) step { return answers(ms, nil) })),
		want: []got{{NotAnnounced, "web", 7500, -1}},
	}, {
		name: "a Service that should not be announced is never required",
		steps: concat([]step{want(0, web(false))},
			every(0, 10000, func(ms int) step { return answers(ms, nil) })),
	}, {
		name: "allocator Service without an address while the API is up",
		steps: concat([]step{want(0, Service{Name: "auto", Announce: true, Managed: true})},
			every(0, 6200, func(ms int) step { return answers(ms, nil) })),
		want: []got{{NotAnnounced, "auto", 6000, -1}},
	}, {
		name: "status lists a VIP nobody holds for longer than 2s",
		steps: concat([]step{want(0, web(true))},
			every(6000, 10000, func(ms int) step { return answers(ms, map[netip.Addr][]string{vip: {"node1"}}) }),
			[]step{holders(6000, nil)},
			every(6000, 9100, func(ms int) step { return status(ms, APIService{Name: "web", Ingress: []netip.Addr{vip}}) }),
			[]step{holders(9100, map[string][]netip.Addr{"node1": {vip}}), status(9200, APIService{Name: "web", Ingress: []netip.Addr{vip}})}),
		want: []got{{StatusMismatch, "web", 6000, 9200}},
	}, {
		name: "status lagging under 2s is fine",
		steps: concat([]step{want(0, web(true)), holders(6000, map[string][]netip.Addr{"node1": {vip}})},
			every(6000, 7900, func(ms int) step { return status(ms, APIService{Name: "web"}) }),
			[]step{status(8000, APIService{Name: "web", Ingress: []netip.Addr{vip}})}),
	}, {
		name: "status slack counts from the API coming back",
		steps: concat([]step{want(0, web(true)), holders(6000, map[string][]netip.Addr{"node1": {vip}}), api(6000, false), api(9000, true)},
			every(9000, 10900, func(ms int) step { return status(ms, APIService{Name: "web"}) })),
	}, {
		name: "an ignored Service's status is not vigil's",
		steps: concat([]step{want(0, Service{Name: "web", Addrs: []netip.Addr{vip}})},
			every(6000, 10000, func(ms int) step { return status(ms, APIService{Name: "web", Ingress: []netip.Addr{vip}}) })),
	}, {
		name: "one address on two Services that may not share",
		steps: []step{
			want(0, Service{Name: "a", Managed: true}), want(0, Service{Name: "b", Managed: true}),
			status(100, APIService{Name: "a", Assigned: []netip.Addr{vip}}, APIService{Name: "b", Assigned: []netip.Addr{vip}}),
			status(200, APIService{Name: "a", Assigned: []netip.Addr{vip}}),
		},
		want: []got{{AddressClash, "198.18.0.50", 100, 200}},
	}, {
		name: "Services with one sharing key may share",
		steps: []step{
			want(0, Service{Name: "a", Share: "k", Managed: true}), want(0, Service{Name: "b", Share: "k", Managed: true}),
			status(100, APIService{Name: "a", Ingress: []netip.Addr{vip}}, APIService{Name: "b", Ingress: []netip.Addr{vip}}),
		},
	}, {
		name: "a deleted Service is not required any more",
		steps: concat([]step{want(0, web(true)), forget(100, "web")},
			every(0, 8000, func(ms int) step { return answers(ms, nil) })),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{LeaseDuration: 5 * time.Second}, t0)
			feed(c, tc.steps)
			if diff := cmp.Diff(tc.want, summarise(c.Violations())); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGapsBlameTheFault(t *testing.T) {
	ids := map[string]int{}
	steps := concat([]step{want(0, web(true))},
		every(0, 1000, answered("node1")),
		[]step{faultOn(1000, ids, "kill", "agent-sigkill", Scope{Node: "node1"})},
		every(1000, 3000, answered("node1")),
		every(3000, 5000, func(ms int) step { return answers(ms, nil) }),
		[]step{heal(4000, ids, "kill")},
		every(5000, 6000, answered("node2")),
		every(6000, 6300, func(ms int) step { return answers(ms, nil) }), // shorter than the window: no gap
		every(6300, 7000, answered("node2")),
		every(7000, 8000, func(ms int) step { return answers(ms, nil) }),
		every(8000, 30000, answered("node2")),
	)
	c := New(Config{LeaseDuration: 5 * time.Second}, t0)
	feed(c, steps)
	var gs []string
	for _, g := range c.Gaps() {
		gs = append(gs, g.FaultKind+" "+g.Length.String())
	}
	want := []string{"agent-sigkill 2.1s", "agent-sigkill 1.1s"}
	if diff := cmp.Diff(want, gs); diff != "" {
		t.Errorf("gaps (-want +got):\n%s", diff)
	}
}

func TestDistribution(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		in   []time.Duration
		want Percentiles
	}{
		{nil, Percentiles{}},
		{[]time.Duration{3 * time.Second}, Percentiles{N: 1, P50: 3 * time.Second, P90: 3 * time.Second, P99: 3 * time.Second, Max: 3 * time.Second}},
		{ds, Percentiles{N: 100, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, Distribution(tc.in)); diff != "" {
			t.Errorf("Distribution(%v) (-want +got):\n%s", tc.in, diff)
		}
	}
}

// A VIP unanswered because its Service changed (endpoints moved away, new
// address) is no failover gap; one whose Service is gone neither.
func TestNoGapWhenTheServiceChanged(t *testing.T) {
	for name, change := range map[string]step{
		"changed": want(1500, Service{Name: "web", Addrs: []netip.Addr{vip}, Announce: true, Managed: true, Eligible: []string{"node2"}}),
		"deleted": forget(1500, "web"),
	} {
		t.Run(name, func(t *testing.T) {
			steps := concat([]step{want(0, web(true)), change},
				every(0, 1000, answered("node1")),
				every(1000, 3000, func(ms int) step { return answers(ms, nil) }),
				every(3000, 4000, answered("node2")))
			c := New(Config{LeaseDuration: 5 * time.Second}, t0)
			feed(c, steps)
			if gs := c.Gaps(); len(gs) != 0 {
				t.Errorf("gaps %+v, want none", gs)
			}
		})
	}
}

package plan_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/plan"
)

func svc(key string, created int, addrs ...string) *kube.Service {
	s := &kube.Service{Key: key, UID: types.UID("uid-" + key), Handled: true, LoadBalancer: true,
		Created: time.Unix(int64(created), 0), Ports: []kube.Port{{Port: 80, Protocol: corev1.ProtocolTCP}}}
	for _, a := range addrs {
		s.Addrs = append(s.Addrs, netip.MustParseAddr(a))
	}
	return s
}

func TestEvaluate(t *testing.T) {
	everywhere := plan.Eligibility{Here: true, Any: true}
	broken := svc("ns/broken", 1)
	broken.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAddress, Field: kube.AnnotationLoadBalancerIPs, Message: `invalid address "x"`}}
	soft := svc("ns/soft", 1, "198.18.0.10")
	soft.Problems = []kube.Problem{{Reason: kube.ReasonInvalidAnnotation, Field: kube.AnnotationHWAddr, Message: "bad"}}
	dhcp := svc("ns/dhcp", 1)
	dhcp.DHCP.V4 = true
	local := svc("ns/local", 1, "198.18.0.10")
	local.Local = true
	notOurs := svc("ns/other", 1, "198.18.0.10")
	notOurs.Handled = false
	udp := svc("ns/udp", 2, "198.18.0.10")
	udp.Ports = []kube.Port{{Port: 80, Protocol: corev1.ProtocolUDP}}

	tests := []struct {
		name   string
		svc    *kube.Service
		others []*kube.Service
		where  plan.Eligibility
		want   plan.Verdict
	}{
		{"deleted", nil, nil, everywhere, plan.Verdict{Reason: plan.ReasonNotHandled}},
		{"not ours", notOurs, nil, everywhere, plan.Verdict{Reason: plan.ReasonNotHandled}},
		{"active here", svc("ns/a", 1, "198.18.0.10"), nil, everywhere,
			plan.Verdict{Handled: true, Active: true, Eligibility: everywhere}},
		{"active elsewhere", svc("ns/a", 1, "198.18.0.10"), nil, plan.Eligibility{Any: true},
			plan.Verdict{Handled: true, Active: true, Eligibility: plan.Eligibility{Any: true}}},
		{"blocking problem", broken, nil, everywhere, plan.Verdict{Handled: true, Reason: kube.ReasonInvalidAddress,
			Message: kube.AnnotationLoadBalancerIPs + `: invalid address "x"`, Warning: true}},
		{"soft problem still active", soft, nil, everywhere, plan.Verdict{Handled: true, Active: true, Eligibility: everywhere}},
		{"no address", svc("ns/none", 1), nil, everywhere, plan.Verdict{Handled: true, Reason: plan.ReasonNoAddress,
			Message: "no address requested (kube-vip.io/loadbalancerIPs or spec.loadBalancerIP)"}},
		{"dhcp", dhcp, nil, everywhere, plan.Verdict{Handled: true, Active: true, Eligibility: everywhere}},
		{"no endpoints", svc("ns/a", 1, "198.18.0.10"), nil, plan.Eligibility{}, plan.Verdict{Handled: true, Active: true,
			Reason: plan.ReasonNoEligibleNode, Message: "no node may announce it: no ready endpoint, or every node is excluded from load balancers"}},
		{"local no endpoints", local, nil, plan.Eligibility{}, plan.Verdict{Handled: true, Active: true,
			Reason: plan.ReasonNoEligibleNode, Message: "externalTrafficPolicy is Local and no eligible node has a ready local endpoint"}},
		{"younger collides", svc("ns/young", 5, "198.18.0.10"), []*kube.Service{svc("ns/old", 1, "198.18.0.10")}, everywhere,
			plan.Verdict{Handled: true, Reason: plan.ReasonPortCollision, Warning: true,
				Message: "80/TCP on 198.18.0.10 is already used by service ns/old"}},
		{"older keeps its port", svc("ns/old", 1, "198.18.0.10"), []*kube.Service{svc("ns/young", 5, "198.18.0.10")}, everywhere,
			plan.Verdict{Handled: true, Active: true, Eligibility: everywhere}},
		{"other protocol shares", udp, []*kube.Service{svc("ns/old", 1, "198.18.0.10")}, everywhere,
			plan.Verdict{Handled: true, Active: true, Eligibility: everywhere}},
		{"unhandled other never collides", svc("ns/young", 5, "198.18.0.10"), []*kube.Service{notOurs}, everywhere,
			plan.Verdict{Handled: true, Active: true, Eligibility: everywhere}},
		{"same creation time: name breaks the tie", svc("ns/b", 1, "198.18.0.10"), []*kube.Service{svc("ns/a", 1, "198.18.0.10")}, everywhere,
			plan.Verdict{Handled: true, Reason: plan.ReasonPortCollision, Warning: true,
				Message: "80/TCP on 198.18.0.10 is already used by service ns/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := plan.Evaluate(tt.svc, tt.others, tt.where)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Evaluate (-want +got):\n%s", d)
			}
		})
	}
}

func TestCandidate(t *testing.T) {
	ip := netip.MustParseAddr("198.18.0.10")
	active := plan.Verdict{Handled: true, Active: true, Eligibility: plan.Eligibility{Here: true, Any: true}}
	tests := []struct {
		name  string
		v     plan.Verdict
		addrs []plan.AddrView
		want  bool
	}{
		{"eligible, address free", active, []plan.AddrView{{Addr: ip}}, true},
		{"not eligible here", plan.Verdict{Handled: true, Active: true, Eligibility: plan.Eligibility{Any: true}}, []plan.AddrView{{Addr: ip}}, false},
		{"not active", plan.Verdict{Handled: true, Eligibility: plan.Eligibility{Here: true, Any: true}}, nil, false},
		{"another node holds a Service on it", active, []plan.AddrView{{Addr: ip, OtherHolds: true}}, false},
		{"this node announces it already: collects it", active, []plan.AddrView{{Addr: ip, Up: true, OtherHolds: true}}, true},
		{"dhcp (no static address)", active, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := plan.Candidate(tt.v, tt.addrs); got != tt.want {
				t.Errorf("Candidate = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestAddress(t *testing.T) {
	tests := []struct {
		name string
		f    plan.AddrFacts
		want plan.Action
	}{
		{"led, free", plan.AddrFacts{Led: true}, plan.Announce},
		{"led, up, other holds a sibling", plan.AddrFacts{Led: true, Up: true, OtherHolds: true}, plan.Announce},
		{"led, not up, other holds a sibling", plan.AddrFacts{Led: true, OtherHolds: true}, plan.Withdraw},
		{"not led, up", plan.AddrFacts{Up: true}, plan.Withdraw},
		{"not led, draining", plan.AddrFacts{Up: true, Draining: true}, plan.Keep},
		{"nothing", plan.AddrFacts{}, plan.Withdraw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := plan.Address(tt.f)
			if got.Action != tt.want || got.Why == "" {
				t.Errorf("Address(%+v) = %v (%q), want %v with a reason", tt.f, got.Action, got.Why, tt.want)
			}
		})
	}
}

func TestStatusFor(t *testing.T) {
	active := plan.Verdict{Handled: true, Active: true, Eligibility: plan.Eligibility{Any: true}}
	tests := []struct {
		name        string
		v           plan.Verdict
		up, pending bool
		want        plan.Status
	}{
		{"announced here", active, true, false, plan.StatusAnnounced},
		{"dhcp pending", active, false, true, plan.StatusPending},
		{"another node's word", active, false, false, plan.StatusLeave},
		{"not ours", plan.Verdict{Reason: plan.ReasonNotHandled}, false, false, plan.StatusTakeBack},
		{"broken", plan.Verdict{Handled: true, Reason: kube.ReasonInvalidAddress}, false, false, plan.StatusNotAnnounced},
		{"no endpoints", plan.Verdict{Handled: true, Active: true}, false, false, plan.StatusNotAnnounced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := plan.StatusFor(tt.v, tt.up, tt.pending); got != tt.want {
				t.Errorf("StatusFor = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRouted(t *testing.T) {
	here := plan.Verdict{Handled: true, Active: true, Eligibility: plan.Eligibility{Here: true, Any: true}}
	elsewhere := plan.Verdict{Handled: true, Active: true, Eligibility: plan.Eligibility{Any: true}}
	tests := []struct {
		name    string
		v       plan.Verdict
		r       plan.Routing
		leading bool
		want    bool
	}{
		{"off", here, plan.RoutingOff, true, false},
		{"ecmp, eligible here", here, plan.RoutingECMP, false, true},
		{"ecmp, not eligible here (Local, no endpoint)", elsewhere, plan.RoutingECMP, false, false},
		{"ecmp, inactive", plan.Verdict{Handled: true, Eligibility: plan.Eligibility{Here: true}}, plan.RoutingECMP, false, false},
		{"elected, leading", here, plan.RoutingElected, true, true},
		{"elected, not leading", here, plan.RoutingElected, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := plan.Routed(tt.v, tt.r, tt.leading); got != tt.want {
				t.Errorf("Routed = %t, want %t", got, tt.want)
			}
		})
	}
	if plan.Route(true).Action != plan.Announce || plan.Route(false).Action != plan.Withdraw {
		t.Error("Route: routed here must announce, else withdraw")
	}
}

func TestCanCarry(t *testing.T) {
	tests := []struct {
		name     string
		l2, bgp  bool
		sessions int
		want     bool
	}{
		{"L2 only", true, false, 0, true},
		{"L2 and BGP, no session: still on the LAN", true, true, 0, true},
		{"BGP only, no session", false, true, 0, false},
		{"BGP only, a session", false, true, 1, true},
		{"neither (nothing to carry: not gated here)", false, false, 0, true},
	}
	for _, tt := range tests {
		if got := plan.CanCarry(tt.l2, tt.bgp, tt.sessions); got != tt.want {
			t.Errorf("%s: CanCarry = %t, want %t", tt.name, got, tt.want)
		}
	}
}

// A Service waiting for room is told as not announced, with a Warning.
func TestWaitingForRoom(t *testing.T) {
	v := plan.Verdict{Handled: true, Active: true, Eligibility: plan.Eligibility{Here: true, Any: true}}.WaitingForRoom("node-a")
	if got := plan.StatusFor(v, false, false); got != plan.StatusNotAnnounced {
		t.Errorf("status %v, want StatusNotAnnounced", got)
	}
	if v.Reason != plan.ReasonElectionFull || !v.Warning || !strings.Contains(v.Message, "node-a") {
		t.Errorf("verdict %+v, want reason %s, a warning naming node-a", v, plan.ReasonElectionFull)
	}
}

package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vigil-lb/vigil/pkg/kube"
)

// Reasons a Service is not announced (the vigil.io/Announced condition's
// reason when false).
const (
	ReasonNotHandled     = "NotHandled"
	ReasonNoAddress      = "NoAddress"
	ReasonPortCollision  = "PortCollision"
	ReasonNoEligibleNode = "NoEligibleNode"
	ReasonElectionFull   = "ElectionFull"
)

// Eligibility is where a Service may be announced: by this node (Here), by
// some node (Any). It comes from the Service's endpoints, its traffic policy
// and the nodes' exclusion label and NetworkUnavailable condition.
type Eligibility struct {
	Here, Any bool
}

// Verdict is what this node concludes about one Service.
type Verdict struct {
	Handled bool // vigil's: LoadBalancer, its class, not ignored, not deleted
	// Active: handled, well-formed, with addresses (or DHCP) and no port
	// collision. An active Service keeps its addresses claimed.
	Active  bool
	Reason  string // why not active or not announceable (condition reason)
	Message string
	// Warning: Reason is the user's mistake and deserves a Warning Event.
	Warning bool
	Eligibility
}

// Announceable reports whether some node may announce the Service.
func (v Verdict) Announceable() bool { return v.Active && v.Any }

// WaitingForRoom is v as the status tells it when node, ranked first for
// the Service, would take its Lease but holds as many as its write budget
// renews (per-Service election), and so does every other candidate: not
// announced, and why.
func (v Verdict) WaitingForRoom(node string) Verdict {
	v.Active, v.Warning, v.Reason = false, true, ReasonElectionFull
	v.Message = "node " + node + " (ranked first for it) and every other candidate hold as many Service Leases as their write budget renews each retry period; the Service waits until one ends (vigil_election_mode=node has no such limit)"
	return v
}

// Evaluate judges svc (nil: deleted). others are the other Services asking
// for any of svc's addresses; the older of two colliding on a port keeps it.
func Evaluate(svc *kube.Service, others []*kube.Service, where Eligibility) Verdict {
	if svc == nil || !svc.Handled {
		return Verdict{Reason: ReasonNotHandled}
	}
	v := Verdict{Handled: true}
	if p, blocked := svc.Blocked(); blocked {
		v.Reason, v.Message, v.Warning = p.Reason, p.Field+": "+p.Message, true
		return v
	}
	if len(svc.Addrs) == 0 && !svc.DHCP.Asked() {
		v.Reason, v.Message = ReasonNoAddress, "no address requested ("+kube.AnnotationLoadBalancerIPs+" or spec.loadBalancerIP)"
		if len(svc.Names) > 0 {
			v.Message = "host name " + strings.Join(svc.Names, ", ") + " not resolved (yet) to an address dns_mode accepts"
		}
		return v
	}
	if msg, clash := collision(svc, others); clash {
		v.Reason, v.Message, v.Warning = ReasonPortCollision, msg, true
		return v
	}
	v.Active, v.Eligibility = true, where
	if !where.Any {
		v.Reason, v.Message = ReasonNoEligibleNode, "no node may announce it: no ready endpoint, or every node is excluded from load balancers"
		if svc.Local {
			v.Message = "externalTrafficPolicy is Local and no eligible node has a ready local endpoint"
		}
	}
	return v
}

// collision finds a port of svc already used on one of its addresses by an
// older handled Service.
func collision(svc *kube.Service, others []*kube.Service) (string, bool) {
	for _, o := range others {
		if o.UID == svc.UID || !o.Handled || !o.Older(svc) {
			continue
		}
		for _, ip := range svc.Addrs {
			if !slices.Contains(o.Addrs, ip) {
				continue
			}
			if p, clash := kube.Collide(svc.Ports, o.Ports); clash {
				return fmt.Sprintf("%d/%s on %s is already used by service %s", p.Port, p.Protocol, ip, o.Key), true
			}
		}
	}
	return "", false
}

// Status is what a Service's status should say, as seen from this node.
type Status int

const (
	// StatusLeave: the node announcing the Service (or the one that will)
	// owns its status; this node writes nothing.
	StatusLeave Status = iota
	// StatusAnnounced: this node announces it (ingress, vipHost, condition
	// true).
	StatusAnnounced
	// StatusPending: this node leads a DHCP Service but has no lease yet.
	StatusPending
	// StatusTakeBack: not vigil's any more: remove what vigil wrote.
	StatusTakeBack
	// StatusNotAnnounced: no node can announce it: no ingress, and why.
	StatusNotAnnounced
)

// StatusFor decides what this node writes into a Service's status. up: this
// node announces it; pending: it leads a DHCP Service still waiting for a
// lease.
func StatusFor(v Verdict, up, pending bool) Status {
	switch {
	case up:
		return StatusAnnounced
	case pending:
		return StatusPending
	case !v.Handled:
		return StatusTakeBack
	case !v.Announceable():
		return StatusNotAnnounced
	}
	return StatusLeave
}

package plan

import "net/netip"

// AddrView is what this node knows about one address of a Service.
type AddrView struct {
	Addr netip.Addr
	Up   bool // this node has it up
	// OtherHolds: another node holds the Lease of another Service on it.
	OtherHolds bool
}

// Candidate reports whether this node may campaign for a Service: it must
// be active and eligible here, and on each of its addresses this node must
// either have the address up already or see no other node holding a Service
// on it. So the node announcing a shared address collects all its Services,
// and a second node never starts on it.
func Candidate(v Verdict, addrs []AddrView) bool {
	if !v.Active || !v.Here {
		return false
	}
	for _, a := range addrs {
		if !a.Up && a.OtherHolds {
			return false
		}
	}
	return true
}

// CanCarry reports whether this node can take a Service out by the ways its
// pool allows: a Service announced by BGP only needs at least one
// established session here. (An elected holder without one could not
// advertise it while another node could; a node without sessions does not
// campaign for it, and resigns it.)
func CanCarry(l2, bgp bool, sessions int) bool { return l2 || !bgp || sessions > 0 }

// Action is what to do with one address on this node.
type Action int

const (
	// Withdraw: the address must not be up here.
	Withdraw Action = iota
	// Announce: bring it up (or keep it up) and announce it.
	Announce
	// Keep: keep it up but only while something still needs it (UPnP
	// forwards being deleted from it).
	Keep
)

func (a Action) String() string {
	switch a {
	case Announce:
		return "announce"
	case Keep:
		return "keep"
	}
	return "withdraw"
}

// AddrFacts are the facts about one address, over every Service on it.
type AddrFacts struct {
	Up bool // this node has it up
	// Led: this node is a candidate for some Service on it and holds that
	// Service's Lease.
	Led bool
	// OtherHolds: another node holds the Lease of some Service on it.
	OtherHolds bool
	// Draining: UPnP forwards are being deleted from it.
	Draining bool
}

// Decision is the plan for one address, and why.
type Decision struct {
	Action Action
	Why    string
}

// Address decides one address. Of two nodes that acquire different
// Services of one address at the same moment, only one starts: each
// confirms its leadership through the Lease informer, so the later one sees
// the earlier one's Lease (OtherHolds) before its own, and the one that has
// the address up keeps it.
func Address(f AddrFacts) Decision {
	switch {
	case f.Led && (f.Up || !f.OtherHolds):
		return Decision{Announce, "this node leads a Service on it"}
	case f.Draining:
		return Decision{Keep, "UPnP forwards are being deleted from it"}
	case f.Led:
		return Decision{Withdraw, "another node announces it"}
	}
	return Decision{Withdraw, "this node leads no Service on it"}
}

// Routing is how this node takes part in announcing a Service by BGP.
type Routing int

const (
	// RoutingOff: the Service is not announced by BGP.
	RoutingOff Routing = iota
	// RoutingECMP: every eligible node advertises it; the router spreads
	// traffic over them. No election.
	RoutingECMP
	// RoutingElected: only the node holding the Service's Lease advertises
	// it (kube-vip's BGP mode with svc_election=true).
	RoutingElected
)

func (r Routing) String() string {
	switch r {
	case RoutingECMP:
		return "ecmp"
	case RoutingElected:
		return "elected"
	}
	return "off"
}

// Routed reports whether this node advertises a Service's addresses by
// BGP: it must be active and eligible here (for Local: have a ready local
// endpoint), and with RoutingElected also lead it.
func Routed(v Verdict, r Routing, leading bool) bool {
	switch {
	case r == RoutingOff || !v.Active || !v.Here:
		return false
	case r == RoutingElected:
		return leading
	}
	return true
}

// Route decides one address's route: advertised while some Service on it
// is routed here (several Services on one address keep one route until the
// last goes).
func Route(routedHere bool) Decision {
	if routedHere {
		return Decision{Announce, "a Service on it is advertised from this node"}
	}
	return Decision{Withdraw, "no Service on it is advertised from this node"}
}

package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	api "github.com/osrg/gobgp/v4/api"
)

// Routes restricted to some peers (Route.Peers) are filtered by one global
// export policy, rebuilt whole (SetPolicies) whenever the set of restricted
// routes changes: one statement per restricted route rejects it for every
// peer outside its list; everything else is accepted. SetPolicies keeps the
// existing assignments and ignores the request's, so the policy is assigned
// once (AddPolicyAssignment) after it first exists, and always kept, if
// need be with no statement.

const exportPolicy = "vigil-export"

// setPolicies installs the export policy for the restricted routes given to
// GoBGP, with extra replacing any route of its prefix (a zero extra changes
// nothing).
func (s *Speaker) setPolicies(ctx context.Context, extra Route) error {
	s.mu.Lock()
	var rs []Route
	for p, r := range s.sent {
		if r.Restricted() && p != extra.Prefix {
			rs = append(rs, r)
		}
	}
	s.mu.Unlock()
	if extra.Restricted() {
		rs = append(rs, extra)
	}
	slices.SortFunc(rs, func(a, b Route) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	if err := s.srv.SetPolicies(ctx, policies(rs)); err != nil {
		return fmt.Errorf("bgp: set export policy (%d restricted routes): %w", len(rs), err)
	}
	if s.policyAssigned {
		return nil
	}
	if err := s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: assignment()}); err != nil {
		return fmt.Errorf("bgp: assign export policy: %w", err)
	}
	s.policyAssigned = true
	return nil
}

func assignment() *api.PolicyAssignment {
	return &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT,
		Policies: []*api.Policy{{Name: exportPolicy}}, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
	}
}

// policies is the SetPolicies request for the restricted routes rs.
func policies(rs []Route) *api.SetPoliciesRequest {
	pol := &api.Policy{Name: exportPolicy}
	req := &api.SetPoliciesRequest{Policies: []*api.Policy{pol}}
	for i, r := range rs {
		ps, ns := "vigil-p-"+strconv.Itoa(i), "vigil-n-"+strconv.Itoa(i)
		bits := uint32(r.Prefix.Bits())
		req.DefinedSets = append(req.DefinedSets,
			&api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: ps,
				Prefixes: []*api.Prefix{{IpPrefix: r.Prefix.String(), MaskLengthMin: bits, MaskLengthMax: bits}}},
			&api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: ns, List: hostPrefixes(r.Peers)})
		pol.Statements = append(pol.Statements, &api.Statement{
			Name: "vigil-s-" + strconv.Itoa(i),
			Conditions: &api.Conditions{
				PrefixSet:   &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: ps},
				NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_INVERT, Name: ns},
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
		})
	}
	return req
}

func hostPrefixes(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = netip.PrefixFrom(a, a.BitLen()).String()
	}
	return out
}

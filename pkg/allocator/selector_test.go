package allocator_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

// match is a LabelMatcher like a matchLabels selector: every pair must be
// there; empty matches everything.
type match map[string]string

func (m match) Matches(labels map[string]string) bool {
	for k, v := range m {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func sel(kv ...string) []allocator.LabelMatcher {
	m := match{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return []allocator.LabelMatcher{m}
}

func (b rb) labels(kv ...string) rb   { b.r.Labels = pairs(kv); return b }
func (b rb) nsLabels(kv ...string) rb { b.r.NamespaceLabels = pairs(kv); return b }

func pairs(kv []string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// MetalLB's serviceAllocation: namespaces OR namespaceSelectors, AND
// serviceSelectors; no restriction at all serves everyone.
func TestServes(t *testing.T) {
	pools := map[string]allocator.Pool{
		"open":       {},
		"names":      {Namespaces: []string{"prod"}},
		"nsSel":      {NamespaceSelectors: sel("team", "a")},
		"namesOrSel": {Namespaces: []string{"prod"}, NamespaceSelectors: sel("team", "a")},
		"svcSel":     {ServiceSelectors: sel("tier", "gold")},
		"twoSvcSels": {ServiceSelectors: append(sel("tier", "gold"), sel("tier", "silver")...)},
		"nsAndSvc":   {NamespaceSelectors: sel("team", "a"), ServiceSelectors: sel("tier", "gold")},
		"everything": {NamespaceSelectors: []allocator.LabelMatcher{match{}}},
	}
	reqs := map[string]*allocator.Request{
		"plain":          req("dev/x").p(),
		"prod":           req("prod/x").p(),
		"team ns":        req("dev/x").nsLabels("team", "a").p(),
		"other team ns":  req("dev/x").nsLabels("team", "b").p(),
		"gold":           req("dev/x").labels("tier", "gold").p(),
		"silver":         req("dev/x").labels("tier", "silver").p(),
		"gold in team":   req("dev/x").labels("tier", "gold").nsLabels("team", "a").p(),
		"gold in prod":   req("prod/x").labels("tier", "gold").p(),
		"team label svc": req("dev/x").labels("team", "a").p(), // a Service label is not a namespace label
	}
	want := map[string][]string{
		"open":       {"gold", "gold in prod", "gold in team", "other team ns", "plain", "prod", "silver", "team label svc", "team ns"},
		"names":      {"gold in prod", "prod"},
		"nsSel":      {"gold in team", "team ns"},
		"namesOrSel": {"gold in prod", "gold in team", "prod", "team ns"},
		"svcSel":     {"gold", "gold in prod", "gold in team"},
		"twoSvcSels": {"gold", "gold in prod", "gold in team", "silver"},
		"nsAndSvc":   {"gold in team"},
		"everything": {"gold", "gold in prod", "gold in team", "other team ns", "plain", "prod", "silver", "team label svc", "team ns"},
	}
	got := map[string][]string{}
	for pn, p := range pools {
		got[pn] = []string{}
		for _, rn := range sortedKeys(reqs) {
			if p.Serves(*reqs[rn]) {
				got[pn] = append(got[pn], rn)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("served (-want +got):\n%s", diff)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestAssignSelectors(t *testing.T) {
	team := allocator.Pool{Name: "team", AutoAssign: true, Priority: 1, NamespaceSelectors: sel("team", "a"), Ranges: ranges("10.0.1.0/30")}
	gold := allocator.Pool{Name: "gold", AutoAssign: true, Priority: 2, ServiceSelectors: sel("tier", "gold"), Ranges: ranges("10.0.2.0/30")}
	manual := allocator.Pool{Name: "manual", ServiceSelectors: sel("tier", "gold"), Ranges: ranges("10.0.9.0/30")}
	open := allocator.Pool{Name: "open", AutoAssign: true, Priority: 3, Ranges: ranges("10.0.3.0/30")}
	for _, tc := range []struct {
		name    string
		pools   []allocator.Pool
		steps   []step
		holding []string
	}{
		{
			name:  "the selectors pick the pool",
			pools: []allocator.Pool{open, gold, team},
			steps: []step{
				{assign: req("dev/team").nsLabels("team", "a").p(), want: []string{"10.0.1.0 team"}, changed: true},
				{assign: req("dev/gold").labels("tier", "gold").p(), want: []string{"10.0.2.0 gold"}, changed: true},
				{assign: req("dev/both").labels("tier", "gold").nsLabels("team", "a").p(), want: []string{"10.0.1.1 team"}, changed: true},
				{assign: req("dev/plain").labels("tier", "bronze").nsLabels("team", "b").p(), want: []string{"10.0.3.0 open"}, changed: true},
			},
			holding: []string{"dev/both 10.0.1.1", "dev/gold 10.0.2.0", "dev/plain 10.0.3.0", "dev/team 10.0.1.0"},
		},
		{
			name:  "no pool: the error names the pools the labels missed",
			pools: []allocator.Pool{gold, team},
			steps: []step{
				{assign: req("dev/plain").p(), err: allocator.ErrNoPool, msg: `namespace "dev": the labels of dev/plain match no service selector of pool gold`},
				{assign: req("dev/plain").nsLabels("team", "b").labels("tier", "silver").p(), err: allocator.ErrNoPool, msg: "pool gold"},
			},
			holding: []string{},
		},
		{
			name:  "a named pool must serve the Service",
			pools: []allocator.Pool{open, gold, team, manual},
			steps: []step{
				{assign: req("dev/x").pool("gold").p(), err: allocator.ErrPoolNotAllowed, msg: `pool "gold" does not serve dev/x (its labels match none of the pool's service selectors)`},
				{assign: req("dev/x").pool("team").p(), err: allocator.ErrPoolNotAllowed, msg: `pool "team" does not serve namespace "dev"`},
				{assign: req("dev/x").pool("manual").p(), err: allocator.ErrPoolNotAllowed, msg: `pool "manual" does not serve dev/x`},
				{assign: req("dev/x").pool("manual").labels("tier", "gold").p(), want: []string{"10.0.9.0 manual"}, changed: true},
				{assign: req("dev/y").pool("team").nsLabels("team", "a").p(), want: []string{"10.0.1.0 team"}, changed: true},
			},
			holding: []string{"dev/x 10.0.9.0", "dev/y 10.0.1.0"},
		},
		{
			name:  "a requested address must be in a pool serving the Service",
			pools: []allocator.Pool{open, gold, team, manual},
			steps: []step{
				{assign: req("dev/x").ask("10.0.1.2").p(), err: allocator.ErrPoolNotAllowed, msg: `10.0.1.2 is in pool team, which does not serve namespace "dev"`},
				{assign: req("dev/x").ask("10.0.9.2").p(), err: allocator.ErrPoolNotAllowed, msg: `10.0.9.2 is in pool manual, which does not serve dev/x (its labels`},
				{assign: req("dev/x").ask("10.0.9.2").labels("tier", "gold").p(), want: []string{"10.0.9.2 manual"}, changed: true},
				{assign: req("dev/y").ask("10.0.1.2").nsLabels("team", "a").p(), want: []string{"10.0.1.2 team"}, changed: true},
			},
			holding: []string{"dev/x 10.0.9.2", "dev/y 10.0.1.2"},
		},
		{
			name: "overlapping pools: one serving the Service is enough",
			pools: []allocator.Pool{
				{Name: "a", ServiceSelectors: sel("tier", "gold"), Ranges: ranges("10.0.5.0/30")},
				{Name: "b", NamespaceSelectors: sel("team", "a"), Ranges: ranges("10.0.5.0/30")},
			},
			steps: []step{
				{assign: req("dev/x").ask("10.0.5.1").p(), err: allocator.ErrPoolNotAllowed,
					msg: `10.0.5.1 is in pool a, which does not serve dev/x (its labels match none of the pool's service selectors); in pool b, which does not serve namespace "dev"`},
				{assign: req("dev/x").ask("10.0.5.1").nsLabels("team", "a").p(), want: []string{"10.0.5.1 b"}, changed: true},
			},
			holding: []string{"dev/x 10.0.5.1"},
		},
		{
			// MetalLB clears such an address and allocates again; vigil
			// never moves a live address (package documentation).
			name:  "changed labels keep what the Service holds",
			pools: []allocator.Pool{open, gold, team, manual},
			steps: []step{
				{assign: req("dev/gold").labels("tier", "gold").p(), want: []string{"10.0.2.0 gold"}, changed: true},
				{assign: req("dev/gold").p(), want: []string{"10.0.2.0 gold"}},
				{assign: req("dev/team").nsLabels("team", "a").p(), want: []string{"10.0.1.0 team"}, changed: true},
				{assign: req("dev/team").nsLabels("team", "b").p(), want: []string{"10.0.1.0 team"}},
				{assign: req("dev/named").pool("manual").labels("tier", "gold").p(), want: []string{"10.0.9.0 manual"}, changed: true},
				{assign: req("dev/named").pool("manual").p(), want: []string{"10.0.9.0 manual"}},
				{assign: req("dev/asked").ask("10.0.1.3").nsLabels("team", "a").p(), want: []string{"10.0.1.3 team"}, changed: true},
				{assign: req("dev/asked").ask("10.0.1.3").p(), want: []string{"10.0.1.3 team"}},
				// Nor does gaining a label move an address.
				{assign: req("dev/plain").p(), want: []string{"10.0.3.0 open"}, changed: true},
				{assign: req("dev/plain").labels("tier", "gold").p(), want: []string{"10.0.3.0 open"}},
			},
			holding: []string{"dev/asked 10.0.1.3", "dev/gold 10.0.2.0", "dev/named 10.0.9.0", "dev/plain 10.0.3.0", "dev/team 10.0.1.0"},
		},
		{
			name:  "a new family is decided by the current labels",
			pools: []allocator.Pool{{Name: "gold6", AutoAssign: true, ServiceSelectors: sel("tier", "gold"), Ranges: ranges("10.0.2.0/30", "fd00::/126")}, open},
			steps: []step{
				{assign: req("dev/x").labels("tier", "gold").p(), want: []string{"10.0.2.0 gold6"}, changed: true},
				{assign: req("dev/x", v4, v6).policy(allocator.PreferDualStack).p(), want: []string{"10.0.2.0 gold6"}, missing: []allocator.Family{v6}},
				{assign: req("dev/x", v4, v6).policy(allocator.PreferDualStack).labels("tier", "gold").p(), want: []string{"10.0.2.0 gold6", "fd00:: gold6"}, changed: true},
			},
			holding: []string{"dev/x 10.0.2.0 fd00::"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := runSteps(t, tc.pools, tc.steps)
			if diff := cmp.Diff(tc.holding, holdings(a)); diff != "" {
				t.Errorf("assignments (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNilSelectorInvalid(t *testing.T) {
	for _, p := range []allocator.Pool{
		{Name: "p", Ranges: ranges("10.0.0.0/30"), NamespaceSelectors: []allocator.LabelMatcher{nil}},
		{Name: "p", Ranges: ranges("10.0.0.0/30"), ServiceSelectors: []allocator.LabelMatcher{match{}, nil}},
	} {
		if err := p.Validate(); !errors.Is(err, allocator.ErrInvalidPool) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidPool", p, err)
		}
	}
}

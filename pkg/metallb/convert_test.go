package metallb

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// objects parses YAML documents into Objects by kind.
func objects(t *testing.T, docs ...string) Objects {
	t.Helper()
	byKind := map[string]int{}
	for i, r := range Resources {
		byKind[strings.TrimSuffix(r.Resource, "s")] = i
	}
	out := Objects{}
	for _, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatalf("%v\n%s", err, d)
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetNamespace("metallb-system")
		kind := strings.ToLower(u.GetKind())
		if kind == "community" {
			kind = "communitie"
		}
		gvr := Resources[byKind[kind]]
		out[gvr] = append(out[gvr], u)
	}
	return out
}

// addrs compares netip.Addr values.
var addrs = cmpopts.EquateComparable(netip.Addr{})

func noPassword(corev1.SecretReference) (string, error) { return "", nil }

func rng(a, b string) allocator.Range {
	return allocator.Range{Start: netip.MustParseAddr(a), End: netip.MustParseAddr(b)}
}

func problems(r Result) []string {
	var out []string
	for _, p := range r.Problems {
		out = append(out, p.Object.Kind+"/"+p.Object.Name+": "+p.Err.Error())
	}
	return out
}

// The two pools and one L2Advertisement of MetalLB's tutorials.
func TestConvertPoolsAndL2(t *testing.T) {
	r := Convert(objects(t,
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: first-pool, labels: {zone: a}}\nspec: {addresses: [192.168.10.7/24, 'fc00::10-fc00::1f']}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: small-pool}\nspec: {addresses: [192.168.9.0/30], autoAssign: false, avoidBuggyIPs: true, serviceAllocation: {priority: 5, namespaces: [web]}}",
		"apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec: {ipAddressPools: [first-pool, small-pool], nodeSelectors: [{matchLabels: {kubernetes.io/hostname: node1}}], interfaces: [eth0]}",
	), noPassword)
	want := []Pool{
		{Pool: allocator.Pool{Name: "first-pool", Ranges: []allocator.Range{rng("192.168.10.0", "192.168.10.255"), rng("fc00::10", "fc00::1f")}, AutoAssign: true, Priority: noPriority},
			Labels: map[string]string{"zone": "a"}, Object: Ref{APIVersion: "metallb.io/v1beta1", Kind: "IPAddressPool", Namespace: "metallb-system", Name: "first-pool"}},
		{Pool: allocator.Pool{Name: "small-pool", Ranges: []allocator.Range{rng("192.168.9.0", "192.168.9.3")}, AvoidBuggyIPs: true, Namespaces: []string{"web"}, Priority: 5},
			Object: Ref{APIVersion: "metallb.io/v1beta1", Kind: "IPAddressPool", Namespace: "metallb-system", Name: "small-pool"}},
	}
	if diff := cmp.Diff(want, r.Pools, addrs); diff != "" {
		t.Errorf("pools (-want +got):\n%s", diff)
	}
	wantCfg := lbconfig.Config{
		L2Advertisements: []lbconfig.L2Advertisement{{Name: "l2", Pools: []string{"first-pool", "small-pool"}, Interfaces: []string{"eth0"},
			Nodes: []*lbconfig.Selector{{MatchLabels: map[string]string{"kubernetes.io/hostname": "node1"}}}}},
		Pools: map[string]lbconfig.PoolInfo{"first-pool": {Labels: map[string]string{"zone": "a"}, MetalLB: true}, "small-pool": {MetalLB: true}},
	}
	if diff := cmp.Diff(wantCfg, r.Config, addrs); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if len(r.Problems) > 0 {
		t.Errorf("problems: %v", problems(r))
	}
}

// MetalLB's rule: a MetalLB pool no advertisement selects is not
// announced; vigil's own pools keep the default L2.
func TestForPoolMetalLBRule(t *testing.T) {
	r := Convert(objects(t,
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lonely}\nspec: {addresses: [10.0.0.0/30]}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: chosen, labels: {l2: 'yes'}}\nspec: {addresses: [10.0.1.0/30]}",
		"apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: by-label}\nspec: {ipAddressPoolSelectors: [{matchLabels: {l2: 'yes'}}]}",
	), noPassword)
	tests := []struct {
		pool string
		l2   []string
	}{
		{"lonely", nil},
		{"chosen", []string{"by-label"}},
		{"vigil-ippool", []string{lbconfig.DefaultL2Name}},
	}
	for _, tt := range tests {
		l2, bgp := r.Config.ForPool(tt.pool)
		var got []string
		for _, a := range l2 {
			got = append(got, a.Name)
		}
		if diff := cmp.Diff(tt.l2, got); diff != "" || len(bgp) > 0 {
			t.Errorf("ForPool(%q): l2 (-want +got):\n%s bgp %v", tt.pool, diff, bgp)
		}
	}
}

func TestConvertBGP(t *testing.T) {
	r := Convert(objects(t,
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: routed}\nspec: {addresses: [10.0.0.0/24]}",
		"apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: communities}\nspec: {communities: [{name: no-advertise, value: '65535:65282'}, {name: big, value: 'large:1:2:3'}]}",
		"apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast}\nspec: {receiveInterval: 100, transmitInterval: 100}",
		"apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1, holdTime: 9s, bfdProfile: fast, nodeSelectors: [{matchExpressions: [{key: rack, operator: In, values: ['1']}]}]}",
		"apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: adv}\nspec: {ipAddressPools: [routed], peers: [tor], localPref: 100, communities: [no-advertise, big, '65000:1'], aggregationLength: 24}",
	), noPassword)
	if len(r.Problems) > 0 {
		t.Fatalf("problems: %v", problems(r))
	}
	wantPeer := lbconfig.Peer{Name: "tor", Address: netip.MustParseAddr("10.0.0.1"), ASN: 64501, MyASN: 64500,
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second,
		BFD:   &lbconfig.BFD{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 3},
		Nodes: []*lbconfig.Selector{{MatchExpressions: []lbconfig.Requirement{{Key: "rack", Operator: "In", Values: []string{"1"}}}}}}
	if diff := cmp.Diff([]lbconfig.Peer{wantPeer}, r.Config.Peers, addrs); diff != "" {
		t.Errorf("peers (-want +got):\n%s", diff)
	}
	wantAdv := lbconfig.BGPAdvertisement{Name: "adv", Pools: []string{"routed"}, Peers: []string{"tor"}, LocalPref: 100,
		AggregationLength: 24, AggregationLengthV6: 128, Communities: []lbconfig.Community{
			{Value: 65535<<16 | 65282}, {Large: true, Global: 1, Local1: 2, Local2: 3}, {Value: 65000<<16 | 1}}}
	if diff := cmp.Diff([]lbconfig.BGPAdvertisement{wantAdv}, r.Config.BGPAdvertisements, addrs); diff != "" {
		t.Errorf("advertisements (-want +got):\n%s", diff)
	}
}

// Bad objects are left out with a problem naming the field; the others
// are used.
func TestConvertProblems(t *testing.T) {
	r := Convert(objects(t,
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: good}\nspec: {addresses: [10.0.0.0/30]}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bad-address}\nspec: {addresses: [10.0.1.0/30, 10.0.2.300]}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: overlap}\nspec: {addresses: [10.0.4.0/30, 10.0.4.2-10.0.4.5]}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: empty}\nspec: {addresses: []}",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bad-selector}\nspec: {addresses: [10.0.3.0/30], serviceAllocation: {namespaceSelectors: [{matchLabels: {a: b}}, {matchExpressions: [{key: a, operator: Gt, values: ['1']}]}]}}",
		"apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: bad-asn}\nspec: {myASN: 64500, peerASN: 0, peerAddress: 10.0.0.1}",
		"apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: vrf}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1, vrf: red}",
		"apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: alias}\nspec: {communities: [nosuch]}",
		"apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: missing}\nspec: {ipAddressPools: [good, gone]}",
		"apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: svcsel}\nspec: {serviceSelectors: [{matchLabels: {a: b}}]}",
		"apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\nspec: {communities: [{name: x, value: '70000:1'}]}",
		"apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: echo}\nspec: {echoMode: true}",
	), noPassword)
	want := []string{
		`IPAddressPool/bad-address: addresses[1]:`,
		`IPAddressPool/overlap: addresses:`,
		`IPAddressPool/empty: addresses: no addresses`,
		`IPAddressPool/bad-selector: serviceAllocation.namespaceSelectors[1]: label selector: "Gt" is not a valid label selector operator`,
		`Community/c: communities[0].value:`,
		`BFDProfile/echo: echoMode: is not supported by vigil`,
		`BGPPeer/bad-asn: peerASN:`,
		`BGPPeer/vrf: vrf: is not supported by vigil`,
		`BGPAdvertisement/alias: communities[0]: "nosuch" is neither`,
		`L2Advertisement/missing: ipAddressPools: no IPAddressPool gone`,
		`L2Advertisement/svcsel: serviceSelectors: is not supported by vigil`,
	}
	got := problems(r)
	if len(got) != len(want) {
		t.Fatalf("problems:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	var names []string
	for _, p := range r.Pools {
		names = append(names, p.Name+map[bool]string{true: "+auto", false: ""}[p.AutoAssign])
	}
	if diff := cmp.Diff([]string{"good+auto"}, names); diff != "" {
		t.Errorf("pools used (-want +got):\n%s", diff)
	}
	if len(r.Config.L2Advertisements) != 1 || r.Config.L2Advertisements[0].Name != "missing" {
		t.Errorf("L2 advertisements used: %+v; want only \"missing\" (a missing pool is a warning)", r.Config.L2Advertisements)
	}
	if r.Problems[9].LeftOut || r.Problems[5].LeftOut || !r.Problems[1].LeftOut {
		t.Errorf("LeftOut: missing pool %v, BFD echo %v, bad address %v", r.Problems[9].LeftOut, r.Problems[5].LeftOut, r.Problems[1].LeftOut)
	}
}

// serviceAllocation: namespaces, namespaceSelectors, serviceSelectors and
// priority as MetalLB reads them; a bad selector leaves the pool out with
// a problem naming it.
func TestConvertServiceAllocation(t *testing.T) {
	const head = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [10.0.0.0/30]"
	selector := func(t *testing.T, ls metav1.LabelSelector) allocator.LabelMatcher {
		s, err := kube.SelectorFrom(ls)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	team := metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	gold := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"gold", "platinum"}}}}
	for _, tt := range []struct {
		name, spec string
		want       func(t *testing.T, p *allocator.Pool) // from the pool without serviceAllocation
		problem    string                                // the problem's prefix; the pool is left out
		reason     string
	}{
		{name: "none", spec: "}", want: func(*testing.T, *allocator.Pool) {}},
		{name: "priority only", spec: ", serviceAllocation: {priority: 3}}", want: func(_ *testing.T, p *allocator.Pool) { p.Priority = 3 }},
		{name: "empty: before pools without one", spec: ", serviceAllocation: {}}", want: func(_ *testing.T, p *allocator.Pool) { p.Priority = allocatedPriority }},
		{name: "namespaces and selectors", spec: ", serviceAllocation: {namespaces: [web], namespaceSelectors: [{matchLabels: {team: a}}], serviceSelectors: [{matchExpressions: [{key: tier, operator: In, values: [gold, platinum]}]}, {}]}}",
			want: func(t *testing.T, p *allocator.Pool) {
				p.Priority, p.Namespaces = allocatedPriority, []string{"web"}
				p.NamespaceSelectors = []allocator.LabelMatcher{selector(t, team)}
				p.ServiceSelectors = []allocator.LabelMatcher{selector(t, gold), selector(t, metav1.LabelSelector{})}
			}},
		{name: "autoAssign false kept", spec: ", autoAssign: false, serviceAllocation: {serviceSelectors: [{matchLabels: {team: a}}]}}",
			want: func(t *testing.T, p *allocator.Pool) {
				p.AutoAssign, p.Priority, p.ServiceSelectors = false, allocatedPriority, []allocator.LabelMatcher{selector(t, team)}
			}},
		{name: "bad service selector", spec: ", serviceAllocation: {serviceSelectors: [{matchExpressions: [{key: tier, operator: In}]}]}}",
			problem: "IPAddressPool/p: serviceAllocation.serviceSelectors[0]: label selector: ", reason: "InvalidServiceAllocation"},
		{name: "bad namespace selector label", spec: ", serviceAllocation: {namespaceSelectors: [{matchLabels: {team: a}}, {matchLabels: {'bad key!': x}}]}}",
			problem: "IPAddressPool/p: serviceAllocation.namespaceSelectors[1]: label selector: ", reason: "InvalidServiceAllocation"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := Convert(objects(t, head+tt.spec), noPassword)
			if tt.problem != "" {
				if got := problems(r); len(got) != 1 || !strings.HasPrefix(got[0], tt.problem) || !r.Problems[0].LeftOut || r.Problems[0].Reason() != tt.reason {
					t.Errorf("problems %q (reason %s), want one left out, %s, prefix %q", got, r.Problems[0].Reason(), tt.reason, tt.problem)
				}
				if len(r.Pools) != 0 {
					t.Errorf("pools %+v, want none", r.Pools)
				}
				return
			}
			want := allocator.Pool{Name: "p", Ranges: []allocator.Range{rng("10.0.0.0", "10.0.0.3")}, AutoAssign: true, Priority: noPriority}
			tt.want(t, &want)
			if len(r.Problems) > 0 || len(r.Pools) != 1 {
				t.Fatalf("problems %q, pools %+v", problems(r), r.Pools)
			}
			if diff := cmp.Diff(want, r.Pools[0].Pool, addrs, sameSelector); diff != "" {
				t.Errorf("pool (-want +got):\n%s", diff)
			}
		})
	}
}

// sameSelector compares kube.Selectors by what they select.
var sameSelector = cmp.Comparer(func(x, y kube.Selector) bool { return x.String() == y.String() })

// The legacy ConfigMap beside IPAddressPools: a pool name both define is
// the IPAddressPool's; the ConfigMap's is left out with a problem on the
// ConfigMap.
func TestMergeNameClash(t *testing.T) {
	crds := Convert(objects(t, "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan}\nspec: {addresses: [10.0.0.0/30]}"), noPassword)
	legacy, err := ParseLegacy([]byte("address-pools: [{name: lan, protocol: layer2, addresses: [10.9.0.0/30]}, {name: old, protocol: layer2, addresses: [10.8.0.0/30]}]"), cmRef)
	if err != nil {
		t.Fatal(err)
	}
	r := crds.Merge(legacy)
	var got []string
	for _, p := range r.Pools {
		got = append(got, p.Name+" "+p.Ranges[0].Start.String())
	}
	if diff := cmp.Diff([]string{"lan 10.0.0.0", "old 10.8.0.0"}, got); diff != "" {
		t.Errorf("pools (-want +got):\n%s", diff)
	}
	if p := problems(r); len(p) != 1 || !strings.HasPrefix(p[0], `ConfigMap/config: address-pools: pool "lan" is also an IPAddressPool`) {
		t.Errorf("problems %q", p)
	}
	if !r.Config.Pools["old"].MetalLB || !r.Config.Pools["lan"].MetalLB {
		t.Errorf("pools %+v: both MetalLB's", r.Config.Pools)
	}
}

package metallb

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/vigil-lb/vigil/pkg/allocator"
	"github.com/vigil-lb/vigil/pkg/crdconfig"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

// Objects are the listed metallb.io objects, by resource.
type Objects map[schema.GroupVersionResource][]*unstructured.Unstructured

// Result is MetalLB's configuration in vigil's models.
type Result struct {
	Pools  []Pool
	Config lbconfig.Config // Config.Pools marks every pool MetalLB's
	// Problems found, in object order (a ConfigMap may have several).
	Problems []Problem
}

// Problem is what is wrong with one object.
type Problem struct {
	Object Ref
	Err    error // names the field
	// LeftOut: the object is not used at all; otherwise it is used and
	// Err is a warning (a missing pool it names, a field vigil ignores).
	LeftOut bool
}

// Reason is the Event reason naming the field: Invalid<Field>.
func (p Problem) Reason() string { return crdconfig.Reason(p.Err) }

// Password reads a BGPPeer's passwordSecret; its errors name the field.
type Password func(corev1.SecretReference) (string, error)

// Convert turns the objects into vigil's models. It never fails as a
// whole: each bad object is a Problem.
func Convert(objs Objects, password Password) Result {
	var r Result
	r.Config.Pools = map[string]lbconfig.PoolInfo{}
	for _, o := range objs[IPAddressPools] {
		p, err := poolFrom(o)
		if r.problem(o, err, true) {
			continue
		}
		r.Pools = append(r.Pools, p)
		r.Config.Pools[p.Name] = lbconfig.PoolInfo{Labels: p.Labels, MetalLB: true}
	}
	aliases := r.aliases(objs[Communities])
	profiles := map[string]*lbconfig.BFD{}
	for _, o := range objs[BFDProfiles] {
		if b, err := crdconfig.BFDFrom(o); !r.problem(o, err, true) {
			profiles[o.GetName()] = b
			// FRR-only settings: the profile is used without them.
			r.problem(o, unsupported(o, "echoMode", "echoInterval", "passiveMode", "minimumTtl"), false)
		}
	}
	for _, o := range objs[BGPPeers] {
		if p, err := peerFrom(o, profiles, password); !r.problem(o, err, true) {
			r.Config.Peers = append(r.Config.Peers, p)
		}
	}
	for _, o := range objs[BGPAdvertisements] {
		if a, err := bgpAdvFrom(o, aliases); !r.problem(o, err, true) {
			r.Config.BGPAdvertisements = append(r.Config.BGPAdvertisements, a)
			r.problem(o, missingPools(a.Pools, r.Config.Pools), false)
		}
	}
	for _, o := range objs[L2Advertisements] {
		if a, err := l2AdvFrom(o); !r.problem(o, err, true) {
			r.Config.L2Advertisements = append(r.Config.L2Advertisements, a)
			r.problem(o, missingPools(a.Pools, r.Config.Pools), false)
		}
	}
	return r
}

// problem records err (if any) against obj and reports whether it did.
func (r *Result) problem(obj *unstructured.Unstructured, err error, leftOut bool) bool {
	if err == nil {
		return false
	}
	r.Problems = append(r.Problems, Problem{Object: refOf(obj), Err: err, LeftOut: leftOut})
	return true
}

func refOf(obj *unstructured.Unstructured) Ref {
	return Ref{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: string(obj.GetUID())}
}

// specOf decodes an object's spec.
func specOf(obj *unstructured.Unstructured, out any) error {
	spec, _, err := unstructured.NestedMap(obj.Object, "spec")
	if err == nil {
		err = runtime.DefaultUnstructuredConverter.FromUnstructured(spec, out)
	}
	if err != nil {
		return crdconfig.FieldError("spec", "%v", err)
	}
	return nil
}

// Where MetalLB's pools without a priority (0) go: after every pool with
// one (MetalLB: a lower value first, 0 last); and among them, those with a
// serviceAllocation before those without (MetalLB tries the pools whose
// serviceAllocation serves the Service before all others).
const (
	noPriority        = math.MaxInt32
	allocatedPriority = noPriority - 1
)

// poolFrom converts an IPAddressPool.
func poolFrom(obj *unstructured.Unstructured) (Pool, error) {
	var s ipAddressPoolSpec
	if err := specOf(obj, &s); err != nil {
		return Pool{}, err
	}
	p := Pool{Labels: obj.GetLabels(), Object: refOf(obj)}
	p.Name, p.AutoAssign, p.AvoidBuggyIPs, p.Priority = obj.GetName(), s.AutoAssign == nil || *s.AutoAssign, s.AvoidBuggyIPs, noPriority
	var err error
	if p.Ranges, err = addresses(s.Addresses); err != nil {
		return Pool{}, err
	}
	if err := serviceAllocationOf(&p.Pool, s.ServiceAllocation); err != nil {
		return Pool{}, err
	}
	if err := p.Validate(); err != nil {
		return Pool{}, crdconfig.FieldError("addresses", "%v", err)
	}
	return p, nil
}

// serviceAllocationOf applies spec.serviceAllocation: which Services the
// pool serves (namespaces or namespaceSelectors, and serviceSelectors) and
// its priority.
func serviceAllocationOf(p *allocator.Pool, a *serviceAllocation) error {
	if a == nil {
		return nil
	}
	p.Namespaces, p.Priority = a.Namespaces, allocatedPriority
	if a.Priority > 0 {
		p.Priority = a.Priority
	}
	var err error
	if p.NamespaceSelectors, err = selectors("namespaceSelectors", a.NamespaceSelectors); err != nil {
		return err
	}
	p.ServiceSelectors, err = selectors("serviceSelectors", a.ServiceSelectors)
	return err
}

// selectors converts serviceAllocation's label selectors; the error names
// the bad one.
func selectors(field string, list []metav1.LabelSelector) ([]allocator.LabelMatcher, error) {
	var out []allocator.LabelMatcher
	for i, ls := range list {
		s, err := kube.SelectorFrom(ls)
		if err != nil {
			return nil, crdconfig.FieldError(fmt.Sprintf("serviceAllocation.%s[%d]", field, i), "%v", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// addresses parses spec.addresses; the error names the entry. As MetalLB
// (Go's net.ParseCIDR), a CIDR with host bits set means its network.
func addresses(list []string) ([]allocator.Range, error) {
	if len(list) == 0 {
		return nil, crdconfig.FieldError("addresses", "no addresses")
	}
	list = slices.Clone(list)
	for i, e := range list {
		if p, err := netip.ParsePrefix(strings.TrimSpace(e)); err == nil {
			list[i] = p.Masked().String()
		}
		if _, err := allocator.ParseRange(list[i]); err != nil {
			return nil, crdconfig.FieldError(fmt.Sprintf("addresses[%d]", i), "%v", err)
		}
	}
	rs, err := allocator.ParseRanges(list)
	if err != nil {
		return nil, crdconfig.FieldError("addresses", "%v", err)
	}
	return rs, nil
}

// aliases reads the Community objects' aliases (name -> value).
func (r *Result) aliases(objs []*unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for _, o := range objs {
		var s communitySpec
		err := specOf(o, &s)
		for i := 0; err == nil && i < len(s.Communities); i++ {
			err = checkAlias(i, s.Communities[i], out)
		}
		if r.problem(o, err, true) {
			continue
		}
		for _, c := range s.Communities {
			out[c.Name] = c.Value
		}
	}
	return out
}

func checkAlias(i int, c communityAlias, seen map[string]string) error {
	field := fmt.Sprintf("communities[%d]", i)
	switch {
	case c.Name == "":
		return crdconfig.FieldError(field+".name", "missing")
	case seen[c.Name] != "":
		return crdconfig.FieldError(field+".name", "alias %q is defined twice", c.Name)
	}
	if _, err := lbconfig.ParseCommunity(c.Value); err != nil {
		return crdconfig.FieldError(field+".value", "%v", err)
	}
	return nil
}

// missingPools warns of pools an advertisement names that do not exist.
func missingPools(names []string, pools map[string]lbconfig.PoolInfo) error {
	var missing []string
	for _, n := range names {
		if _, ok := pools[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return crdconfig.FieldError("ipAddressPools", "no IPAddressPool %s (the other pools are announced)", strings.Join(missing, ", "))
}

// unsupported names a field vigil does not implement, if set.
func unsupported(obj *unstructured.Unstructured, fields ...string) error {
	for _, f := range fields {
		if v, ok, _ := unstructured.NestedFieldNoCopy(obj.Object, "spec", f); ok && !isZero(v) {
			return crdconfig.FieldError(f, "is not supported by vigil")
		}
	}
	return nil
}

func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case int64:
		return x == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// peerFrom converts a BGPPeer (v1beta2).
func peerFrom(obj *unstructured.Unstructured, profiles map[string]*lbconfig.BFD, password Password) (lbconfig.Peer, error) {
	if err := unsupported(obj, "dynamicASN", "localASN", "vrf", "interface", "disableMP", "dualStackAddressFamily"); err != nil {
		return lbconfig.Peer{}, err
	}
	return crdconfig.PeerFrom(obj, profiles, password)
}

// bgpAdvFrom converts a BGPAdvertisement, its community aliases resolved.
func bgpAdvFrom(obj *unstructured.Unstructured, aliases map[string]string) (lbconfig.BGPAdvertisement, error) {
	if err := unsupported(obj, "serviceSelectors"); err != nil {
		return lbconfig.BGPAdvertisement{}, err
	}
	comms, _, err := unstructured.NestedStringSlice(obj.Object, "spec", "communities")
	if err != nil {
		return lbconfig.BGPAdvertisement{}, crdconfig.FieldError("communities", "%v", err)
	}
	if len(comms) > 0 {
		obj = obj.DeepCopy()
		for i, c := range comms {
			if v, ok := aliases[c]; ok {
				comms[i] = v
			} else if !strings.Contains(c, ":") {
				return lbconfig.BGPAdvertisement{}, crdconfig.FieldError(fmt.Sprintf("communities[%d]", i), "%q is neither a community nor an alias of a Community object", c)
			}
		}
		if err := unstructured.SetNestedStringSlice(obj.Object, comms, "spec", "communities"); err != nil {
			return lbconfig.BGPAdvertisement{}, crdconfig.FieldError("communities", "%v", err)
		}
	}
	return crdconfig.BGPAdvertisementFrom(obj)
}

// l2AdvFrom converts an L2Advertisement.
func l2AdvFrom(obj *unstructured.Unstructured) (lbconfig.L2Advertisement, error) {
	if err := unsupported(obj, "serviceSelectors", "preferredNodeSelectors"); err != nil {
		return lbconfig.L2Advertisement{}, err
	}
	return crdconfig.L2AdvertisementFrom(obj)
}

// Merge adds other's pools and configuration to r's; a pool other defines
// again is left out of other with a problem.
func (r Result) Merge(other Result) Result {
	out := Result{Pools: append([]Pool(nil), r.Pools...), Config: r.Config.Merge(lbconfig.Config{
		Peers: other.Config.Peers, BGPAdvertisements: other.Config.BGPAdvertisements, L2Advertisements: other.Config.L2Advertisements}),
		Problems: append(append([]Problem(nil), r.Problems...), other.Problems...)}
	if out.Config.Pools == nil {
		out.Config.Pools = map[string]lbconfig.PoolInfo{}
	}
	for _, p := range other.Pools {
		if _, dup := out.Config.Pools[p.Name]; dup {
			out.Problems = append(out.Problems, Problem{Object: p.Object, LeftOut: true,
				Err: crdconfig.FieldError("address-pools", "pool %q is also an IPAddressPool; the IPAddressPool is used", p.Name)})
			continue
		}
		out.Pools = append(out.Pools, p)
		out.Config.Pools[p.Name] = other.Config.Pools[p.Name]
	}
	return out
}

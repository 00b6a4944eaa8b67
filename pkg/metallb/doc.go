// Package metallb serves MetalLB's configuration as it is, as one more
// source of vigil's models: the metallb.io objects (v1beta1 IPAddressPool,
// L2Advertisement, BGPAdvertisement, BFDProfile, Community; v1beta2
// BGPPeer) in MetalLB's namespace, and MetalLB's legacy ConfigMap (key
// "config" of metallb-system/config). Pools become allocator.Pools (for
// pkg/ipam), advertisements, peers and BFD profiles become an
// lbconfig.Config (for the agent's announce policy and pkg/peering), with
// MetalLB's field names, defaults and rules: an advertisement with no pools
// selects every pool; a MetalLB pool that no advertisement selects is not
// announced (lbconfig.PoolInfo.MetalLB).
//
// Both are optional: while MetalLB's CRDs are not installed (or the
// ConfigMap does not exist) the source says so once and serves nothing from
// them. A malformed object is left out with a Warning Event on it naming the
// field; the rest keeps working. Conversion (convert.go, legacy.go) is pure;
// source.go watches.
package metallb

// Package allocator hands out LoadBalancer addresses from address pools, as
// MetalLB's controller and kube-vip-cloud-provider do. It is the pure core:
// no Kubernetes, no I/O, no clock, no randomness. The same calls in the same
// order always give the same answers.
//
// # Pools
//
// A Pool is a named set of address Ranges (CIDRs or start-end ranges, IPv4
// and IPv6 may be mixed within a pool but not within a range) with MetalLB's
// knobs: AutoAssign, AvoidBuggyIPs, a Priority and MetalLB's
// serviceAllocation: which owners the pool serves (Pool.Serves).
//
//   - Namespaces and NamespaceSelectors: the owner's namespace is named,
//     or its labels (Request.NamespaceLabels) match one of the selectors.
//     Both empty: every namespace.
//   - ServiceSelectors, if any: the owner's labels (Request.Labels) match
//     one of them, too.
//
// Selectors are LabelMatchers: the caller adapts Kubernetes label
// selectors; this package imports no Kubernetes code. An owner a pool does
// not serve gets no address from it: not by default, not by naming it, not
// by requesting one of its addresses (ErrPoolNotAllowed), as MetalLB.
// ParseRanges parses MetalLB's `addresses` list, ParseList a comma-separated
// string (kube-vip-cloud-provider's range-* keys, or MetalLB-style entries),
// and ParseHostCIDRs kube-vip-cloud-provider's cidr-* keys, which leave out
// the network and broadcast address of an IPv4 CIDR.
//
// Parsing is strict where a typo would hand out the wrong addresses:
//
//   - A CIDR with host bits set (192.168.1.1/24) is rejected with
//     ErrHostBits and a hint (192.168.1.0/24). MetalLB and
//     kube-vip-cloud-provider silently mask it; but 192.168.1.10/24 is as
//     likely a host address copied from `ip addr` as a pool, and masking it
//     would put the router and every host of the subnet in the pool.
//   - IPv4-mapped IPv6 addresses (::ffff:192.168.1.1) are rejected with
//     ErrMapped: write the IPv4 form. Requested and restored addresses, by
//     contrast, are unmapped, as package kube does for annotations.
//   - Zones, mixed families within a range, start after end, and ranges of
//     one pool that overlap each other are errors. A bare address is not a
//     range (write 192.168.1.10/32).
//
// Ranges of different pools may overlap; Overlaps reports it. Addresses are
// tracked globally, not per pool, so an address in two pools is never handed
// out twice.
//
// # Assignments
//
// An Allocator keeps, per owner (the namespace/name of a Service), its
// addresses, a sharing key and the owner's ports. An owner holds one address
// per family it wants, or every address it requested: kube-vip lets a
// Service ask for several addresses of one family, and each counts as used.
//
//   - Assign is idempotent: an owner whose addresses still satisfy its
//     request gets them back (Result.Changed, which is about addresses
//     only, is false). An address the owner holds, requested or not, is
//     kept unless the request itself contradicts it: other addresses of
//     that family are requested (then exactly those are held; without a
//     request, one address per family is kept), another pool is named and the address is
//     not in it (an address in no pool at all is kept), the family is no
//     longer wanted, or a changed sharing key or ports no longer agree with
//     the address's other holders. Pool edits (ranges, namespaces,
//     selectors, AutoAssign, AvoidBuggyIPs, deleting a pool) and changed
//     labels of the owner or its namespace never move or free a live
//     assignment and never make Assign fail for what the owner holds
//     (MetalLB's controller, by contrast, clears an address whose pool no
//     longer serves the Service and allocates again); Orphans reports
//     assignments outside every pool.
//   - A requested address the owner does not hold must be offered by a
//     pool that serves the owner (ErrNotInPool, ErrPoolNotAllowed),
//     whether or not it auto-assigns, and be free or shareable (ErrInUse,
//     as *InUseError naming the holders).
//   - A named pool that is needed (for a requested address or a family to
//     allocate) must exist (ErrNoSuchPool) and serve the owner
//     (ErrPoolNotAllowed). Pools with AutoAssign false are used only when
//     named, or for an address requested in them.
//   - Otherwise the candidates are the AutoAssign pools that serve the
//     owner, by Priority (lower first) then Name; none is ErrNoPool.
//     Within a pool, ranges are tried in the order given and the lowest
//     free address is taken. With a SharingKey, an address already held
//     under that key whose holders' ports do not collide is preferred to a
//     free one, so Services that opt in to sharing end up together (MetalLB
//     takes whichever comes first in address order).
//   - Dual-stack: all families still needed come from the first candidate
//     pool that can supply all of them, even if a higher-priority pool could
//     supply only some (pools that hold the owner's requested or kept
//     addresses are tried first). If no pool can, each family comes from
//     the first pool that has one. With PreferDualStack only the first
//     family is required: a second one that cannot be had is reported in
//     Result.Missing, not as an error, and is tried again on the next
//     Assign. A required family that no candidate can supply is
//     ErrExhausted (*ExhaustedError names the family and the pools).
//   - Sharing needs explicit opt-in: an address is shared only between
//     owners with the same non-empty SharingKey whose ports (number and
//     protocol, "" meaning TCP) do not collide. Further conditions (MetalLB
//     also wants the same selector for externalTrafficPolicy Local) are the
//     caller's, folded into the key.
//   - Assign, Restore and SetPools change nothing when they fail: the owner
//     keeps what it held, so a caller should not clear a Service's address
//     because Assign failed.
//
// Restore rebuilds state from existing Services at start or on a leader
// change. It accepts addresses outside every pool (assigned by hand) and
// reports an address claimed by a second owner without a shared key, or
// with colliding ports, as *InUseError without changing anything: restore
// in the order of the Services' age, and the older one keeps it.
//
// # Cost
//
// Nothing is proportional to the size of a pool: a /64 costs what a /28
// costs. Used addresses are kept per family in a sorted set of maximal runs
// of consecutive addresses; the first free address of a range is found by a
// binary search and a walk over the runs it meets, and .0/.255 skipping is
// arithmetic. Assign and Release take O(log r + k) comparisons for r runs
// and k runs walked (k is 1 unless AvoidBuggyIPs splits runs at /24
// boundaries), plus a slice insertion or deletion, O(r) moves in the worst
// case of a fully fragmented set (r is at most the number of used
// addresses). Stats and Orphans walk the assignments and the pools' ranges.
//
// Sizes and counts in Stats and Pool.Size are uint64 and saturate at
// math.MaxUint64 (a /64 has 2^64 addresses, one more than fits). A caller
// writing them to an int64 status field should clamp at math.MaxInt64.
//
// An Allocator is safe for concurrent use; its methods serialize on a mutex.
package allocator

// Package election runs one coordination.k8s.io Lease election per key (a
// Service, or one shared lock) for this node.
//
// It differs from client-go's leaderelection in the ways that matter for a
// VIP (see docs/design.md):
//
//   - Followers do not poll. One shared Lease informer feeds every race; a
//     released or deleted Lease wakes the followers at once, and expiry is a
//     timer computed from the follower's own observation time (skew-safe: a
//     renewTime is never compared with the local clock).
//   - A holder is Leading only until the send time of its last accepted
//     renewal plus RenewDeadline, and only once its own write has come back
//     through the informer. With RenewDeadline < LeaseDuration, a partitioned holder stops
//     before any follower can consider the Lease expired.
//   - Resign is explicit and synchronous: the caller withdraws the VIP first,
//     then resigns; the release (holder "") reaches followers through their
//     watch in one round trip.
//   - Each process start has its own instance id (annotation on the Lease), so
//     a restarted agent never assumes it still holds a Lease written by its
//     previous life.
//   - A 409 Conflict is never retried over the same record: a holder steps
//     down, a candidate waits until the informer shows what changed.
//   - A race costs no goroutine while it waits: its steps run one at a time
//     on a goroutine its timer or a wake-up starts, gone when no step is due
//     (runner.go), so thousands of candidacies cost their state, not their
//     stacks.
//
// Term gives a holder's current deadline (stop announcing by then) and
// expiry (no follower takes over before then), e.g. for kernel address
// lifetimes. Campaign may be called before Run: the candidacy starts once
// Run's Lease cache has synced. All time comes from Config.Clock (tests use
// internal/clock/clocktest).
//
// The elector only notifies (a func(Key)); it never touches the dataplane.
package election

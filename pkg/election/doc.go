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
//   - A holder is Leading only until (send time of its last accepted renewal
//   - RenewDeadline), and only once its own write has come back through the
//     informer. With RenewDeadline < LeaseDuration, a partitioned holder stops
//     before any follower can consider the Lease expired.
//   - Resign is explicit and synchronous: the caller withdraws the VIP first,
//     then resigns; the release (holder "") reaches followers through their
//     watch in one round trip.
//   - Each process start has its own instance id (annotation on the Lease), so
//     a restarted agent never assumes it still holds a Lease written by its
//     previous life.
//
// The elector only notifies (a func(Key)); it never touches the dataplane.
package election

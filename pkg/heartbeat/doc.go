// Package heartbeat is vigil's node-heartbeat election mode
// (vigil_election_mode=node): per-Service elections whose steady cost is one
// Lease write per node per LeaseDuration/3, not one per Service per renew
// period.
//
//   - Each node renews one Lease of its own, vigil-heartbeat-<node>, every
//     Config.Interval (LeaseDuration/3 by default; pkg/cli shortens it
//     where a bound VIP's kernel lifetime, counted from the last heartbeat,
//     needs it), and tries a failed heartbeat again a RetryPeriod later. It
//     carries the agent's instance id, the election mode and the exact
//     durations (annotations: leaseDurationSeconds is whole seconds, the
//     settings may not be).
//   - A Service's Lease (kubevip-<service>, holder = node) is written only
//     when its ownership changes. A holder leads a Service while the
//     Service Lease names it (this instance) and until the send time of its
//     last accepted heartbeat + RenewDeadline; it stops at once when the
//     Lease names another holder or is deleted.
//   - A node takes a Service over only when the holder's node Lease has not
//     changed for the holder's LeaseDuration by this node's own observation
//     (never by comparing another clock's renewTime) and a fresh GET of that
//     node Lease still shows the record observed; then with a
//     resourceVersion-guarded write of the Service Lease. A node Lease with a
//     new instance id means the holder's predecessor is gone: its Services
//     are re-decided at once.
//   - A holder whose heartbeat lapsed (a heartbeat answered only after its
//     previous deadline) re-asserts each Service it held with a
//     resourceVersion-guarded write before leading again, so a takeover that
//     happened meanwhile wins (409) and the two are never both leading.
//   - Who takes a free Service is decided by rendezvous hashing of (Service,
//     node) among the live nodes: the node ranked r waits r × RankDelay.
//     There is no failback: a Service stays with a live holder.
//   - Every agent must run the same mode and durations: a node Lease that
//     says otherwise, or a Service Lease renewed by a per-Service-mode agent,
//     is reported (log and Config.OnMismatch), never resolved by guessing.
//   - With Config.Keeper (LAN liveness, vigil_members=true) the node's
//     heartbeat term is kept through an API outage by pkg/election's rules
//     (keep.go): the holder rule on the heartbeat term, the follower rule
//     on node Lease observations and Service Lease writes.
//
// The Elector has the same methods the agent uses from pkg/election.
package heartbeat

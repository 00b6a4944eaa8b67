// Package members is vigil's LAN liveness layer: a direct, encrypted
// heartbeat among the agents of a cluster on the node network, used only to
// decide when a Lease holder cut off from the API server may keep its VIPs
// (docs/design.md, "Keeping VIPs through an API outage").
//
// Every Interval (100 ms) each agent sends every other agent one UDP
// datagram (port 7947 by default), sealed with AES-GCM under the shared key
// (16, 24 or 32 bytes: AES-128/192/256) and a random nonce. A report says
// who sends it (node, instance id, a sequence number), whether it can reach
// the API server and since when, which Services it holds, and — the part
// that bounds its age — the latest send time this agent has heard from
// every other agent, as that agent's own clock stamped it (the echo).
//
// Age without clocks: a report from B that echoes A's send time t was sent
// after t, so by A's own clock it is younger than now−t. A report counts as
// fresh for A only if that bound is below Fresh (T, 1 s). No clock is
// compared with another, a delayed or replayed datagram can only look
// older, and a datagram without the key cannot be read nor forged.
//
// Vouched answers the holder rule: ok only while keeping is enabled for
// the whole cluster (every agent known from the API runs with members on
// and the same key fingerprint) and every required agent (known ones and
// any heard since) has said "cannot reach the API" in a report that echoes
// one of our sends younger than T; it returns the oldest such send time,
// from which a holder's kept term is computed. While this agent cannot
// reach the API itself, a latest report saying "reachable" ends it at once.
// A silent agent is never "gone", only unconfirmed.
//
// Fresh answers the follower rule: every regain of the API starts a new
// epoch; the elector starts its expiry clocks afresh from the epoch's start
// and writes nothing unless this agent reports "reachable" in the epoch it
// decided in. SetReachable(true) sends a "reachable" report to every agent
// before it returns.
//
// The package imports no Kubernetes code: the wiring (pkg/cli) feeds it the
// known agents (SetPeers) and the prober's verdict (SetReachable). All time
// comes from Config.Clock.
package members

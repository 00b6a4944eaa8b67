// Package bgpproc runs vigil's BGP speaker in a process of its own
// (cmd/vigil-bgp) and drives it from the agent, so that the agent does not
// link GoBGP and its gRPC and protobuf packages: an agent that does not
// speak BGP does not pay for them (about 9 MiB of resident memory, most of
// it the pages their package initialisation touches), and a fault in the
// speaker does not take the agent, its elections and its L2 VIPs with it.
//
// The agent's side is Remote, which has the speaker's methods (SetRouterID,
// SetPeers, Announce, Withdraw, Peers, Routes, Changes, Run). It keeps the
// desired router id, peers and routes itself: calls record them and, while
// a speaker process is up, apply them there and return its answer. Run
// starts the process, gives it the whole desired state, pings it every
// Options.Ping and starts it again (after Options.Restart) if it ends; when
// Run's context ends it asks the process to stop, which withdraws every
// route and closes the sessions as the in-process speaker did (bounded by
// Options.StopWait, then killed).
//
// The process's side is Serve: it reads the start request, builds the
// speaker (pkg/bgp in cmd/vigil-bgp), runs it and answers requests until
// the agent says stop, its input ends (the agent exited) or the agent has
// been silent for Start.Silence (the agent is stalled, e.g. SIGSTOP): in
// every case the speaker withdraws its routes and stops. Command starts
// the process with SIGKILL as its parent-death signal, so an agent that is
// killed takes its speaker with it.
//
// The wire is one JSON object per line on the process's stdin (requests)
// and stdout (replies, and change notices with id 0); its logs go to the
// agent's stderr.
//
// It imports no Kubernetes code and no other vigil package but
// internal/clock and pkg/bgpspec.
package bgpproc

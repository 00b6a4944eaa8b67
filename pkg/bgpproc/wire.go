package bgpproc

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/pkg/bgpspec"
)

// Operations of a request.
const (
	opStart    = "start"
	opRouterID = "router-id"
	opPeers    = "set-peers"
	opAnnounce = "announce"
	opWithdraw = "withdraw"
	opState    = "peers"
	opPing     = "ping" // no reply
	opStop     = "stop" // no reply: the process withdraws, stops and exits
)

// Start is what the speaker process is started with.
type Start struct {
	// Speaker is the speaker's identity, with the current router id.
	Speaker bgpspec.Config
	// Silence: the process stops (withdrawing every route) when it has
	// heard nothing from the agent for this long.
	Silence time.Duration
	// LogLevel is the level of the process's logs.
	LogLevel slog.Level
}

// request is one line the agent writes to the process.
type request struct {
	ID       uint64         `json:"id,omitempty"` // 0: no reply
	Op       string         `json:"op"`
	Start    *Start         `json:"start,omitempty"`
	RouterID netip.Addr     `json:"routerID,omitzero"`
	Peers    []bgpspec.Peer `json:"peers,omitempty"`
	Route    *bgpspec.Route `json:"route,omitempty"`
	Prefix   netip.Prefix   `json:"prefix,omitzero"`
}

// reply is one line the process writes back: the answer to request ID, or
// with ID 0 a notice that a session changed state.
type reply struct {
	ID      uint64              `json:"id,omitempty"`
	Err     string              `json:"err,omitempty"`
	Peers   []bgpspec.PeerState `json:"peers,omitempty"`
	Changed bool                `json:"changed,omitempty"`
}

// lineWriter writes one JSON object per line from any goroutine.
type lineWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newLineWriter(w io.Writer) *lineWriter { return &lineWriter{enc: json.NewEncoder(w)} }

func (w *lineWriter) write(v any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.enc.Encode(v)
}

package bgp_test

// The lab tests run the Speaker in a helper process started inside the
// node's network namespace (ip netns exec … <this test binary>): GoBGP
// opens its sockets from goroutines of its own, which a namespace switch
// of one locked thread (netnstest.InNS) would not cover. The helper is
// this test binary with VIGIL_BGP_HELPER=1; it reads one JSON command a
// line on stdin and answers one JSON line on stdout. SIGTERM ends Run's
// context (withdraw, Cease, stop), then the helper exits.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/pkg/bgp"
)

const helperEnv = "VIGIL_BGP_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

type helperConfig struct {
	ASN           uint32
	RouterID      netip.Addr
	SourceAddress netip.Addr
}

type request struct {
	Op     string // "peers", "announce", "withdraw", "state", "routerid"
	Peers  []bgp.Peer
	ID     netip.Addr
	Route  bgp.Route
	Prefix netip.Prefix
}

type response struct {
	Err   string
	Peers []bgp.PeerState
}

// helperMain is the helper process: a Speaker driven through stdin.
func helperMain() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var hc helperConfig
	if err := json.Unmarshal([]byte(os.Getenv("VIGIL_BGP_CONFIG")), &hc); err != nil {
		log.Error("helper config", "err", err)
		return 2
	}
	s, err := bgp.New(bgp.Config{ASN: hc.ASN, RouterID: hc.RouterID, SourceAddress: hc.SourceAddress, Log: log})
	if err != nil {
		log.Error("new speaker", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	go serveHelper(ctx, s, log)
	if err := <-done; err != nil {
		log.Error("run", "err", err)
		return 1
	}
	log.Info("helper: Run returned")
	return 0
}

func serveHelper(ctx context.Context, s *bgp.Speaker, log *slog.Logger) {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		var resp response
		err := json.Unmarshal(in.Bytes(), &req)
		if err == nil {
			resp.Peers, err = helperDo(ctx, s, req)
		}
		if err != nil {
			resp.Err = err.Error()
		}
		if err := out.Encode(resp); err != nil {
			log.Error("helper: write", "err", err)
			return
		}
	}
}

func helperDo(ctx context.Context, s *bgp.Speaker, req request) ([]bgp.PeerState, error) {
	switch req.Op {
	case "peers":
		return nil, s.SetPeers(ctx, req.Peers)
	case "announce":
		return nil, s.Announce(ctx, req.Route)
	case "withdraw":
		return nil, s.Withdraw(ctx, req.Prefix)
	case "state":
		return s.Peers(ctx)
	case "routerid":
		return nil, s.SetRouterID(req.ID)
	}
	return nil, fmt.Errorf("unknown op %q", req.Op)
}

// node is the test's side of a helper process.
type node struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	mu   sync.Mutex
	log  string
	done chan struct{}
}

// startNode runs a Speaker in namespace ns; it is stopped (SIGTERM, then
// SIGKILL) when the test ends, and its log shown if the test failed.
func startNode(t *testing.T, ns string, hc helperConfig) *node {
	t.Helper()
	cfg, err := json.Marshal(hc)
	if err != nil {
		t.Fatal(err)
	}
	logPath := t.TempDir() + "/speaker.log"
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "VIGIL_BGP_CONFIG="+string(cfg))
	cmd.Stderr = logf
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{cmd: cmd, in: in, out: bufio.NewScanner(outp), log: logPath, done: make(chan struct{})}
	n.out.Buffer(nil, 1<<20)
	go func() { _ = cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		n.stop(5 * time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("---- speaker log ----\n%s", b)
		}
	})
	return n
}

func (n *node) call(t *testing.T, req request) response {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.in.Write(append(b, '\n')); err != nil {
		t.Fatalf("helper %s: %v", req.Op, err)
	}
	if !n.out.Scan() {
		t.Fatalf("helper %s: no answer (%v)", req.Op, n.out.Err())
	}
	var resp response
	if err := json.Unmarshal(n.out.Bytes(), &resp); err != nil {
		t.Fatalf("helper %s: %v", req.Op, err)
	}
	if resp.Err != "" {
		t.Fatalf("helper %s: %s", req.Op, resp.Err)
	}
	return resp
}

func (n *node) setPeers(t *testing.T, ps ...bgp.Peer) { n.call(t, request{Op: "peers", Peers: ps}) }
func (n *node) announce(t *testing.T, r bgp.Route)    { n.call(t, request{Op: "announce", Route: r}) }
func (n *node) withdraw(t *testing.T, p netip.Prefix) { n.call(t, request{Op: "withdraw", Prefix: p}) }
func (n *node) peers(t *testing.T) []bgp.PeerState    { return n.call(t, request{Op: "state"}).Peers }

// term sends SIGTERM.
func (n *node) term(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}

// stop sends SIGTERM and waits up to grace, then kills; it reports
// whether the helper exited by itself.
func (n *node) stop(grace time.Duration) error {
	select {
	case <-n.done:
		return nil
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		return nil
	case <-time.After(grace):
		_ = n.cmd.Process.Kill()
		<-n.done
		return errors.New("helper did not exit after SIGTERM")
	}
}

package peering_test

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
	"github.com/vigil-lb/vigil/pkg/peering"
)

func peer(name, addr string, sel ...*lbconfig.Selector) lbconfig.Peer {
	return lbconfig.Peer{Name: name, Address: netip.MustParseAddr(addr), ASN: 65001, Nodes: sel}
}

func names(ps []lbconfig.Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// Kontena's per-node peers: each BGPPeer's node-selectors pick the nodes
// that peer with it; environment peers are always there and win a clash.
func TestSelect(t *testing.T) {
	host := func(h string) *lbconfig.Selector {
		return &lbconfig.Selector{MatchExpressions: []lbconfig.Requirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{h}}}}
	}
	static := []lbconfig.Peer{peer("env", "198.18.0.254")}
	objs := []lbconfig.Peer{
		peer("tor-a", "198.18.0.250", host("node1")),
		peer("tor-b", "198.18.0.251", host("node2"), host("node3")),
		peer("everyone", "198.18.0.252"),
		peer("clash", "198.18.0.254"),
	}
	log := slog.New(slog.DiscardHandler)
	for node, want := range map[string][]string{
		"node1": {"env", "tor-a", "everyone"},
		"node2": {"env", "tor-b", "everyone"},
		"node3": {"env", "tor-b", "everyone"},
		"node4": {"env", "everyone"},
	} {
		got := names(peering.Select(static, objs, map[string]string{"kubernetes.io/hostname": node}, log))
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", node, d)
		}
	}
}

type source struct {
	mu  sync.Mutex
	cfg lbconfig.Config
}

func (s *source) Config() lbconfig.Config { s.mu.Lock(); defer s.mu.Unlock(); return s.cfg }

type sessions struct {
	mu   sync.Mutex
	sets [][]string
	got  chan struct{}
}

func (s *sessions) SetPeers(_ context.Context, ps []lbconfig.Peer) error {
	s.mu.Lock()
	s.sets = append(s.sets, names(ps))
	s.mu.Unlock()
	s.got <- struct{}{}
	return nil
}

// The controller sets the peers at start, again when the objects change,
// and not when nothing changed.
func TestRun(t *testing.T) {
	src := &source{}
	ses := &sessions{got: make(chan struct{}, 10)}
	clk := clocktest.New(time.Unix(0, 0))
	labels := map[string]string{"kubernetes.io/hostname": "node1"}
	c := peering.New(peering.Config{
		Static:     []lbconfig.Peer{peer("env", "198.18.0.254")},
		NodeLabels: func(context.Context) (map[string]string, error) { return labels, nil },
		Clock:      clk, Log: slog.New(slog.DiscardHandler),
	}, src, ses)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	<-ses.got
	src.mu.Lock()
	src.cfg.Peers = []lbconfig.Peer{peer("tor", "198.18.0.250")}
	src.mu.Unlock()
	c.Changed()
	<-ses.got
	c.Changed() // nothing changed: no SetPeers
	clk.Step(31 * time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ses.mu.Lock()
	defer ses.mu.Unlock()
	if d := cmp.Diff([][]string{{"env"}, {"env", "tor"}}, ses.sets, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("SetPeers calls (-want +got):\n%s", d)
	}
}

//go:build e2e

package election_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/testing/lab"
)

var cp *lab.ControlPlane

func TestMain(m *testing.M) { os.Exit(lab.Main(m, &cp)) }

type node struct {
	name   string
	e      *election.Elector
	cancel context.CancelFunc
	done   chan struct{}
}

func startNode(t *testing.T, cs kubernetes.Interface, name, instance string) *node {
	t.Helper()
	e, err := election.New(election.Config{Identity: name, Instance: instance}, cs, func(election.Key) {}, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{name: name, e: e, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(n.done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-n.done })
	if err := lab.WaitFor(ctx, 10*time.Second, e.HasSynced); err != nil {
		t.Fatal(err)
	}
	return n
}

// leaders polls every node and fails the test if two lead at once.
func leaders(t *testing.T, nodes []*node, key election.Key) []string {
	var out []string
	for _, n := range nodes {
		if n.e.Leading(key) {
			out = append(out, n.name)
		}
	}
	if len(out) > 1 {
		t.Fatalf("two leaders at once: %v", out)
	}
	return out
}

func waitLeader(t *testing.T, nodes []*node, key election.Key, not string, within time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if l := leaders(t, nodes, key); len(l) == 1 && l[0] != not {
			return l[0], time.Since(start)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no new leader (other than %q) within %v", not, within)
	return "", 0
}

func TestElection(t *testing.T) {
	lab.Require(t, cp)
	cs, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "election-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := election.Key{Namespace: ns.Name, Name: "kubevip-web"}
	var nodes []*node
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, startNode(t, cs, fmt.Sprintf("node%d", i), fmt.Sprintf("boot-%d", i)))
	}
	for _, n := range nodes {
		n.e.Campaign(key)
	}
	first, took := waitLeader(t, nodes, key, "", 5*time.Second)
	t.Logf("first leader %s after %v", first, took)

	// Graceful: the leader resigns, a follower takes over within one watch
	// round trip.
	var leader *node
	for _, n := range nodes {
		if n.name == first {
			leader = n
		}
	}
	if err := leader.e.Resign(ctx, key); err != nil {
		t.Fatal(err)
	}
	second, took := waitLeader(t, nodes, key, first, 2*time.Second)
	t.Logf("handover %s -> %s in %v", first, second, took)
	if took > time.Second {
		t.Errorf("graceful handover took %v, want well under 1s", took)
	}

	// Crash: the leader's process stops without releasing; a follower takes
	// over after the lease duration (5s) and not before the old one stopped.
	for _, n := range nodes {
		if n.name == second {
			leader = n
		}
	}
	start := time.Now()
	leader.cancel()
	<-leader.done
	var rest []*node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	third, took := waitLeader(t, rest, key, second, 10*time.Second)
	t.Logf("crash failover %s -> %s in %v", second, third, time.Since(start))
	if took < 4*time.Second {
		t.Errorf("follower took over after %v, before the 5s lease could expire", took)
	}

	// A restarted agent with the same name but a new instance id does not
	// assume it holds the lease.
	re := startNode(t, cs, third, "boot-again")
	re.e.Campaign(key)
	time.Sleep(300 * time.Millisecond)
	if re.e.Leading(key) {
		t.Errorf("restarted %s leads a lease held by its previous instance", third)
	}
}

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
	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
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
	return startNodeNotify(t, cs, name, instance, func(election.Key) {})
}

func startNodeNotify(t *testing.T, cs kubernetes.Interface, name, instance string, notify func(election.Key)) *node {
	t.Helper()
	e, err := election.New(election.Config{Identity: name, Instance: instance}, kubeclienttest.Wrap(cs), notify, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
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

// A node that starts while others already hold Leases must not take them:
// its Lease cache fills before its event handlers have seen every record,
// and a record in the cache not yet observed is a fresh sighting, never an
// expired one. (A slow notify consumer widens that window.) No Lease may
// change hands while its holder is alive, and no key may have two leaders.
func TestLateJoinerDoesNotSteal(t *testing.T) {
	lab.Require(t, cp)
	cs, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "race-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const keys = 30
	key := func(k int) election.Key {
		return election.Key{Namespace: ns.Name, Name: fmt.Sprintf("kubevip-s%02d", k)}
	}
	first := startNode(t, cs, "node1", "boot-1")
	for k := range keys {
		first.e.Campaign(key(k))
	}
	for k := range keys {
		waitLeader(t, []*node{first}, key(k), "", 5*time.Second)
	}
	slow := func(election.Key) { time.Sleep(10 * time.Millisecond) }
	late := startNodeNotify(t, cs, "node2", "boot-2", slow)
	for k := range keys {
		late.e.Campaign(key(k))
	}
	nodes := []*node{first, late}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for k := range keys {
			leaders(t, nodes, key(k))
		}
		time.Sleep(5 * time.Millisecond)
	}
	for k := range keys {
		if l := leaders(t, nodes, key(k)); len(l) != 1 || l[0] != "node1" {
			t.Errorf("%s: leaders %v, want node1 only", key(k), l)
		}
		lease, err := cs.CoordinationV1().Leases(ns.Name).Get(ctx, key(k).Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tr := lease.Spec.LeaseTransitions; tr != nil && *tr != 0 {
			t.Errorf("%s changed hands %d times while its holder was alive", key(k), *tr)
		}
	}
}

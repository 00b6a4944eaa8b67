//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/testing/lab"
)

// membersKey is a fresh random key for one test (none is committed).
func membersKey(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// membersEnv is the agent environment for LAN liveness with key.
func membersEnv(key string) []string {
	return []string{"vigil_members=true", "vigil_members_key=" + key}
}

// nodeObjects gives every lab node a Node object with its LAN address as
// InternalIP (where the agents find each other), deleted when the test
// ends.
func (c *cluster) nodeObjects() {
	c.t.Helper()
	for _, h := range c.n.Nodes {
		n, err := c.cs.CoreV1().Nodes().Create(c.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: h.Name}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			n, err = c.cs.CoreV1().Nodes().Get(c.ctx, h.Name, metav1.GetOptions{})
		}
		if err != nil {
			c.t.Fatal(err)
		}
		name := h.Name
		c.t.Cleanup(func() { _ = c.cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: h.IPv4.String()}}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		if _, err := c.cs.CoreV1().Nodes().UpdateStatus(c.ctx, n, metav1.UpdateOptions{}); err != nil {
			c.t.Fatal(err)
		}
	}
}

// metric reads one unlabelled series from the agent on node (-1: none).
func (c *cluster) metric(node, name string) float64 {
	return c.metrics(node, name)[0]
}

// metrics reads unlabelled series from one scrape of the agent on node,
// in the order of names (-1: none).
func (c *cluster) metrics(node string, names ...string) []float64 {
	out := make([]float64, len(names))
	for i := range out {
		out[i] = -1
	}
	code, body, err := c.n.HTTPGet(c.ctx, c.node(node), "http://127.0.0.1:2112/metrics")
	if err != nil || code != 200 {
		return out
	}
	for _, line := range strings.Split(body, "\n") {
		for i, name := range names {
			if v, ok := strings.CutPrefix(line, name+" "); ok && out[i] == -1 {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					out[i] = f
				}
			}
		}
	}
	return out
}

// waitMembersSeen waits until every agent hears want others.
func (c *cluster) waitMembersSeen(want int) {
	c.t.Helper()
	for _, n := range c.allNodes() {
		var got float64
		if err := lab.WaitFor(c.ctx, 20*time.Second, func() bool {
			got = c.metric(n, "vigil_members_seen")
			return got == float64(want)
		}); err != nil {
			c.t.Fatalf("%s hears %v agents, want %d", n, got, want)
		}
	}
}

// onePerNode creates one Service per node (externalTrafficPolicy Local,
// an endpoint only there), so every node holds one VIP; it returns VIP ->
// node.
func (c *cluster) onePerNode(first byte) map[netip.Addr]string {
	c.t.Helper()
	out := map[netip.Addr]string{}
	for i, n := range c.allNodes() {
		vip := netip.AddrFrom4([4]byte{198, 18, 0, first + byte(i)})
		name := fmt.Sprintf("web%d", i+1)
		c.setEndpoints(name, n)
		c.createService(name, []string{vip.String()}, withLocal())
		out[vip] = n
	}
	for vip, n := range out {
		c.waitOwner(vip, n, "", 10*time.Second)
	}
	c.watchAtMostOne("a VIP bound", func() []string { return c.mostBound(out) })
	return out
}

// mostBound lists the nodes that have bound the VIP of vips bound on the
// most nodes (one `ip addr` per node).
func (c *cluster) mostBound(vips map[netip.Addr]string) []string {
	on := map[netip.Addr][]string{}
	for _, h := range c.n.Nodes {
		o, err := c.n.Exec(c.ctx, h, "ip", "-o", "addr", "show")
		if err != nil {
			return nil // the test is ending
		}
		for _, f := range strings.Fields(o) {
			if pfx, err := netip.ParsePrefix(f); err == nil {
				if _, ok := vips[pfx.Addr()]; ok {
					on[pfx.Addr()] = append(on[pfx.Addr()], h.Name)
				}
			}
		}
	}
	var worst []string
	for _, nodes := range on {
		if len(nodes) > len(worst) {
			worst = nodes
		}
	}
	return worst
}

// arpWatch asks for every VIP's owner every 100 ms until stopped, and
// counts the samples where it was not the node expected.
type arpWatch struct {
	mu      sync.Mutex
	samples int
	wrong   map[netip.Addr][]string // sampled owners other than the expected one ("" = nobody)
	stop    chan struct{}
	done    chan struct{}
}

func (c *cluster) watchARP(want map[netip.Addr]string) *arpWatch {
	w := &arpWatch{wrong: map[netip.Addr][]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			for vip, n := range want {
				if got := c.owner(vip); got != n {
					w.mu.Lock()
					w.wrong[vip] = append(w.wrong[vip], got)
					w.mu.Unlock()
				}
			}
			w.mu.Lock()
			w.samples++
			w.mu.Unlock()
		}
	}()
	return w
}

// end stops the watch and fails the test if any sample was wrong.
func (w *arpWatch) end(t *testing.T, what string) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for vip, got := range w.wrong {
		t.Errorf("%s: %s answered by %q in %d of %d samples", what, vip, got, len(got), w.samples)
	}
	t.Logf("%s: %d ARP samples per VIP", what, w.samples)
}

// outage keeps VIPs on every node through an outage made by stop and
// ended by start: ARP answered by the same node in every 100 ms sample,
// never two nodes bound, the same holder after, and an Event per Service
// saying it was kept.
func outage(t *testing.T, d time.Duration, stop func() error, start func(context.Context) error) {
	c := newCluster(t, 3, membersEnv(membersKey(t))...)
	if d > time.Minute { // newCluster's context lasts 5 minutes
		ctx, cancel := context.WithTimeout(context.Background(), d+5*time.Minute)
		t.Cleanup(cancel)
		c.ctx = ctx
	}
	c.nodeObjects()
	c.startAll()
	vips := c.onePerNode(130)
	c.waitMembersSeen(2)
	w := c.watchARP(vips)
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() { // the control plane is shared: never leave it down
		if !restarted {
			_ = start(context.Background())
		}
	})
	time.Sleep(d)
	for _, n := range c.allNodes() {
		if got := c.metric(n, "vigil_services_kept"); got != 1 {
			t.Errorf("%s keeps %v Services %v into the outage, want 1", n, got, d)
		}
	}
	restarted = true
	if err := start(c.ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("API away for %v", time.Since(began))
	time.Sleep(7 * time.Second) // past a LeaseDuration: no flap, no takeover
	w.end(t, "through the outage and after")
	for i := range vips {
		c.waitEvent(fmt.Sprintf("web%d", slices.Index(c.allNodes(), vips[i])+1), "VIPKeptWithoutAPI", 10*time.Second)
	}
}

// The API server killed for 15 s with a VIP on every node: every VIP
// keeps answering from its node.
func TestAPIServerAwayKeepsVIPs(t *testing.T) {
	outage(t, 15*time.Second, func() error { cp.KillAPIServer(); return nil }, cp.StartAPIServer)
}

// The same for 5 minutes: make test-e2e-long (VIGIL_E2E_LONG=1).
func TestAPIServerAwayFiveMinutes(t *testing.T) {
	if os.Getenv("VIGIL_E2E_LONG") == "" {
		t.Skip("5-minute outage: make test-e2e-long")
	}
	outage(t, 5*time.Minute, func() error { cp.KillAPIServer(); return nil }, cp.StartAPIServer)
}

// etcd stopped while the API server stays up is the same as the API away.
func TestEtcdStoppedKeepsVIPs(t *testing.T) {
	outage(t, 15*time.Second, cp.StopEtcd, func(context.Context) error { return cp.ContinueEtcd() })
}

// TestPartitionedHolderWithdrawsFirst with members on: the holder cut
// from the API alone hears the others reach it, withdraws by its deadline,
// and one of them takes over after the lease.
func TestPartitionedHolderWithdrawsFirstWithMembers(t *testing.T) {
	c := newCluster(t, 3, membersEnv(membersKey(t))...)
	c.nodeObjects()
	c.startAll()
	c.waitMembersSeen(2)
	c.partitionedHolderWithdrawsFirst(mustAddr("198.18.0.135"))
}

// A node cut from the API and the LAN (its agent still running): no fresh
// report reaches it, so it withdraws by its deadline, and another node
// takes over after the lease.
func TestCutFromAPIAndLANTakenOver(t *testing.T) {
	c := newCluster(t, 3, membersEnv(membersKey(t))...)
	c.nodeObjects()
	c.startAll()
	vip := mustAddr("198.18.0.136")
	c.watchBound(vip.String())
	holder := c.announced("web", vip)
	c.waitMembersSeen(2)
	cut := time.Now()
	for _, f := range []func(context.Context, *lab.Host) error{c.n.CutAPI, c.n.CutLAN} {
		if err := f(c.ctx, c.node(holder)); err != nil {
			t.Fatal(err)
		}
	}
	next, took := c.waitOwner(vip, "", holder, 15*time.Second)
	t.Logf("%s cut from API and LAN; %s answers after %v", holder, next, took)
	if took < 4*time.Second {
		t.Errorf("taken over %v after the cut, before a lease could expire", took)
	}
	if got := c.nodesWith(vip); slices.Contains(got, holder) {
		t.Errorf("%s still has %s bound %v after the cut", holder, vip, time.Since(cut))
	}
}

// One agent with another key: its reports are refused, the others see a
// different fingerprint on its record, and keeping is off for the whole
// cluster: the API away withdraws every VIP, as without members.
func TestWrongKeyBehavesLikeNoLiveness(t *testing.T) {
	key := membersKey(t)
	c := newCluster(t, 3)
	c.nodeObjects()
	nodes := c.allNodes()
	for i, n := range nodes {
		k := key
		if i == 2 {
			k = membersKey(t)
		}
		c.startAgent(n, membersEnv(k)...)
	}
	for _, n := range nodes {
		c.waitReady(n)
	}
	vip := mustAddr("198.18.0.137")
	c.watchBound(vip.String())
	c.announced("web", vip)
	if err := lab.WaitFor(c.ctx, 10*time.Second, func() bool { return c.metric(nodes[0], "vigil_members_refused") > 0 }); err != nil {
		t.Errorf("%s refused no datagram from the agent with another key", nodes[0])
	}
	cp.KillAPIServer()
	t.Cleanup(func() {
		if err := cp.StartAPIServer(context.Background()); err != nil {
			t.Error(err)
		}
	})
	c.waitNoOwner(vip, 8*time.Second)
}

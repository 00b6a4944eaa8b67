//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubeVIP plays kube-vip's services mode (svc_election=true) holding one
// Service on one node, writing exactly what kube-vip writes: the Lease
// kubevip-<service> (holder = node name, client-go's fields, no labels or
// annotations of vigil's) renewed every second, the VIP bound /32 on the
// node's eth0 (the kernel answers ARP for it), kube-vip.io/vipHost and the
// Service's status.
type kubeVIP struct {
	c        *cluster
	node     string
	svc      string
	vip      netip.Addr
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

func (c *cluster) startKubeVIP(node, svc string, vip netip.Addr) *kubeVIP {
	c.t.Helper()
	k := &kubeVIP{c: c, node: node, svc: svc, vip: vip, stop: make(chan struct{}), done: make(chan struct{})}
	now := metav1.NewMicroTime(time.Now())
	holder, dur, tr := node, int32(5), int32(0)
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "kubevip-" + svc, Namespace: c.ns},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur,
			AcquireTime: &now, RenewTime: &now, LeaseTransitions: &tr},
	}
	if _, err := c.cs.CoordinationV1().Leases(c.ns).Create(c.ctx, lease, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.n.Exec(c.ctx, c.node(node), "ip", "addr", "add", vip.String()+"/32", "dev", "eth0"); err != nil {
		c.t.Fatal(err)
	}
	s := c.service(svc)
	s.Annotations = map[string]string{"kube-vip.io/vipHost": node}
	s, err := c.cs.CoreV1().Services(c.ns).Update(c.ctx, s, metav1.UpdateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: vip.String()}}
	if _, err := c.cs.CoreV1().Services(c.ns).UpdateStatus(c.ctx, s, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	go k.renew()
	c.t.Cleanup(k.halt)
	return k
}

// renew renews the Lease every second, as kube-vip's leader election does.
func (k *kubeVIP) renew() {
	defer close(k.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		}
		k.write(func(l *coordinationv1.Lease) {
			now := metav1.NewMicroTime(time.Now())
			l.Spec.RenewTime = &now
		})
	}
}

func (k *kubeVIP) write(change func(*coordinationv1.Lease)) {
	leases := k.c.cs.CoordinationV1().Leases(k.c.ns)
	l, err := leases.Get(context.Background(), "kubevip-"+k.svc, metav1.GetOptions{})
	if err != nil {
		return
	}
	change(l)
	_, _ = leases.Update(context.Background(), l, metav1.UpdateOptions{})
}

// halt stops renewing (a kill: the Lease and the address stay).
func (k *kubeVIP) halt() {
	k.stopOnce.Do(func() { close(k.stop) })
	<-k.done
}

// shutdown is kube-vip's SIGTERM: the Lease is released (holder "", as
// client-go's ReleaseOnCancel writes it), then the address removed.
func (k *kubeVIP) shutdown() {
	k.halt()
	k.write(func(l *coordinationv1.Lease) {
		empty, one := "", int32(1)
		now := metav1.NewMicroTime(time.Now())
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &empty, &one, &now
	})
	time.Sleep(100 * time.Millisecond) // kube-vip's order: release, then remove
	if _, err := k.c.n.Exec(k.c.ctx, k.c.node(k.node), "ip", "addr", "del", k.vip.String()+"/32", "dev", "eth0"); err != nil {
		k.c.t.Error(err)
	}
}

// gapWatch samples, every 50 ms, whether the client gets an answer for ip,
// and keeps the longest stretch without one.
type gapWatch struct {
	mu      sync.Mutex
	longest time.Duration
	since   time.Time // start of the current silence (zero: answered)
}

func (c *cluster) watchGaps(ip netip.Addr) *gapWatch {
	g := &gapWatch{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			g.sample(c.owner(ip) != "", time.Now())
		}
	}()
	c.t.Cleanup(func() { close(stop); wg.Wait() })
	return g
}

func (g *gapWatch) sample(answered bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case answered && !g.since.IsZero():
		g.longest = max(g.longest, now.Sub(g.since))
		g.since = time.Time{}
	case !answered && g.since.IsZero():
		g.since = now
	}
}

func (g *gapWatch) worst() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.longest
}

// A cluster running kube-vip is switched to vigil node by node. While
// kube-vip on node1 renews its Lease, the vigil agents on node2 and node3
// leave it alone; kube-vip stopped (SIGTERM: release, then the address
// goes) and vigil started in its place, the Service is taken over once —
// never bound on two nodes, unanswered for less than the lease duration.
// A second Service whose kube-vip is killed (Lease and address left
// behind) is not taken over while node1 still answers for it, though its
// Lease has expired; vigil's start on node1 removes the leftover address,
// and the Service is taken over then.
func TestMigrateFromKubeVIP(t *testing.T) {
	c := newCluster(t, 3)
	gentle, killed := mustAddr("198.18.0.171"), mustAddr("198.18.0.172")
	for name, ip := range map[string]netip.Addr{"gentle": gentle, "killed": killed} {
		c.setEndpoints(name, c.allNodes()...)
		c.createService(name, []string{ip.String()})
	}
	kvGentle := c.startKubeVIP("node1", "gentle", gentle)
	kvKilled := c.startKubeVIP("node1", "killed", killed)
	c.waitOwner(gentle, "node1", "", 5*time.Second)
	c.watchBound(gentle.String())
	c.watchBound(killed.String())
	gaps := map[netip.Addr]*gapWatch{gentle: c.watchGaps(gentle), killed: c.watchGaps(killed)}

	c.startAgent("node2", "svc_election=true")
	c.startAgent("node3", "svc_election=true")
	c.waitReady("node2")
	c.waitReady("node3")
	before, err := leaseRequests(c.ctx, c.cs)
	if err != nil {
		t.Fatal(err)
	}
	const wait = 7 * time.Second
	time.Sleep(wait) // longer than the lease: kube-vip renews, vigil waits
	for _, ip := range []netip.Addr{gentle, killed} {
		if on := c.nodesWith(ip); !slices.Equal(on, []string{"node1"}) {
			t.Fatalf("%s bound on %v while kube-vip on node1 renews its Lease", ip, on)
		}
	}
	// vigil reads a Lease it cannot watch (no vigil label) once per retry
	// period: 2 agents × 2 Leases, 4 GETs/s, beside kube-vip's own 2.
	after, err := leaseRequests(c.ctx, c.cs)
	if err != nil {
		t.Fatal(err)
	}
	if gets := (after["GET"] - before["GET"]) / wait.Seconds(); gets > 12 {
		t.Errorf("%.0f lease GETs/s while kube-vip holds its Leases, want about 6 (one per Lease per second for each of 2 agents, and kube-vip's)", gets)
	} else {
		t.Logf("%.1f lease GETs/s while kube-vip holds its Leases", gets)
	}

	kvKilled.halt() // SIGKILL: its Lease and address stay
	time.Sleep(8 * time.Second)
	if on := c.nodesWith(killed); !slices.Equal(on, []string{"node1"}) {
		t.Fatalf("%s bound on %v after its kube-vip was killed: node1 still answers for it, nobody may take over", killed, on)
	}
	kvGentle.shutdown()
	c.startAgent("node1", "svc_election=true") // removes the killed kube-vip's address
	for _, ip := range []netip.Addr{gentle, killed} {
		holder, took := c.waitOwner(ip, "", "", 15*time.Second)
		t.Logf("%s: answered by %s's vigil %v after kube-vip stopped", ip, holder, took.Round(time.Millisecond))
	}
	for ip, g := range gaps {
		if w := g.worst(); w >= 5*time.Second {
			t.Errorf("%s unanswered for %v, want less than the lease duration (5s)", ip, w)
		} else {
			t.Logf("%s: longest unanswered stretch %v", ip, w.Round(10*time.Millisecond))
		}
	}
	for _, name := range []string{"gentle", "killed"} {
		s := c.waitService(name, 10*time.Second, "vigil's status", func(s *corev1.Service) bool {
			l, err := c.cs.CoordinationV1().Leases(c.ns).Get(c.ctx, "kubevip-"+name, metav1.GetOptions{})
			return err == nil && l.Labels["app.kubernetes.io/managed-by"] == "vigil" &&
				*l.Spec.HolderIdentity == s.Annotations["kube-vip.io/vipHost"] && len(s.Status.LoadBalancer.Ingress) == 1
		})
		t.Logf("%s: Lease and vipHost now %s's", name, s.Annotations["kube-vip.io/vipHost"])
	}
}

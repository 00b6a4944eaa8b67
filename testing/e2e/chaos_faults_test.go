//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/testing/chaos/checker"
	"github.com/vigil-lb/vigil/testing/lab"
)

// chaosFault is one kind of fault the schedule draws. try returns false
// when the fault cannot run now (its target is busy, the API is down).
type chaosFault struct {
	kind   string
	weight int
	try    func(k *campaign) bool
}

func chaosFaults() []chaosFault {
	return []chaosFault{
		{"agent-sigkill", 3, (*campaign).agentKill},
		{"agent-sigterm", 2, (*campaign).agentTerm},
		{"agent-restart", 2, (*campaign).agentRestart},
		{"agent-stall", 2, (*campaign).agentStall},
		{"api-cut", 3, (*campaign).apiCut},
		{"lan-cut", 3, (*campaign).lanCut},
		{"apiserver-restart", 1, (*campaign).apiserverRestart},
		{"apiserver-stop", 1, (*campaign).apiserverStop},
		{"etcd-restart", 1, (*campaign).etcdRestart},
		{"dhcp-stop", 1, (*campaign).dhcpStop},
		{"upnp-stop", 1, (*campaign).upnpStop},
		{"allocator-burst", 1, (*campaign).allocatorBurst},
		{"endpoint-flap", 4, (*campaign).endpointFlap},
		{"service-churn", 5, (*campaign).churn},
	}
}

// schedule draws a fault every 1–4 s until end.
func (k *campaign) schedule(end time.Time) {
	faults := chaosFaults()
	total := 0
	for _, f := range faults {
		total += f.weight
	}
	for now().Before(end) {
		select {
		case <-k.ctx.Done():
			return
		case <-time.After(time.Duration(1000+k.rnd.Intn(3000)) * time.Millisecond):
		}
		r := k.rnd.Intn(total)
		for _, f := range faults {
			if r -= f.weight; r < 0 {
				if !f.try(k) {
					k.logf("skip %s (target busy or API down)", f.kind)
				}
				break
			}
		}
	}
}

// between draws a duration in [lo, hi].
func (k *campaign) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(k.rnd.Int63n(int64(hi-lo)+1))
}

// claim reserves key (a node, "control-plane", "dhcp", "upnp") for one
// fault; at least one node always stays free of node faults.
func (k *campaign) claim(key string, node bool) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.busy[key] {
		return false
	}
	if node {
		n := 0
		for _, h := range k.c.n.Nodes {
			if k.busy[h.Name] {
				n++
			}
		}
		if n >= len(k.c.n.Nodes)-1 {
			return false
		}
	}
	k.busy[key] = true
	return true
}

func (k *campaign) release(key string) {
	k.mu.Lock()
	delete(k.busy, key)
	k.mu.Unlock()
}

// inject runs one fault in the background: do, then undo after hold; the
// checker learns when it started and when its undo ran (healed).
func (k *campaign) inject(kind, key string, scope checker.Scope, hold time.Duration, do, undo func() error) {
	id := k.chk.FaultStarted(now(), kind, scope)
	k.logf("fault #%d %s on %s (hold %v)", id, kind, key, hold.Round(time.Millisecond))
	k.faults.Add(1)
	go func() {
		defer k.faults.Done()
		if err := do(); err != nil {
			k.t.Errorf("fault #%d %s: %v", id, kind, err)
		}
		time.Sleep(hold)
		if err := undo(); err != nil {
			k.t.Errorf("undo of fault #%d %s: %v", id, kind, err)
		}
		k.chk.FaultHealed(now(), id)
		k.logf("healed #%d %s on %s", id, kind, key)
		k.release(key)
	}()
}

func nothing() error { return nil }

// pickNode claims a random node for a fault ("" when none is free).
func (k *campaign) pickNode() string {
	nodes := k.nodeNames()
	start := k.rnd.Intn(len(nodes))
	for i := range nodes {
		if n := nodes[(start+i)%len(nodes)]; k.claim(n, true) {
			return n
		}
	}
	return ""
}

func (k *campaign) agentKill() bool {
	node := k.pickNode()
	if node == "" {
		return false
	}
	k.inject("agent-sigkill", node, checker.Scope{Node: node}, k.between(time.Second, 8*time.Second),
		func() error { k.expectExit(node).Kill(); return nil },
		func() error { return k.startAgent(node) })
	return true
}

func (k *campaign) agentTerm() bool {
	node := k.pickNode()
	if node == "" {
		return false
	}
	k.inject("agent-sigterm", node, checker.Scope{Node: node}, k.between(time.Second, 5*time.Second),
		func() error { return k.term(node) },
		func() error { return k.startAgent(node) })
	return true
}

// term stops node's agent with SIGTERM; it must exit within 10 s.
func (k *campaign) term(node string) error {
	if took, ok := k.expectExit(node).Stop(10 * time.Second); !ok {
		return fmt.Errorf("agent on %s did not exit within %v of SIGTERM", node, took)
	}
	return nil
}

func (k *campaign) agentRestart() bool {
	node := k.pickNode()
	if node == "" {
		return false
	}
	k.inject("agent-restart", node, checker.Scope{Node: node}, 0,
		func() error { return k.term(node) },
		func() error { return k.startAgent(node) })
	return true
}

func (k *campaign) agentStall() bool {
	node := k.pickNode()
	if node == "" {
		return false
	}
	k.inject("agent-stall", node, checker.Scope{Node: node}, k.between(chaosLease+time.Second, chaosLease+8*time.Second),
		func() error { return k.agent(node).Signal(syscall.SIGSTOP) },
		func() error { return k.agent(node).Signal(syscall.SIGCONT) })
	return true
}

func (k *campaign) apiCut() bool {
	node := k.pickNode()
	if node == "" {
		return false
	}
	h := k.c.node(node)
	k.inject("api-cut", node, checker.Scope{Node: node}, k.between(3*time.Second, 30*time.Second),
		func() error { return k.c.n.CutAPI(k.ctx, h) },
		func() error { return k.c.n.RestoreAPI(k.ctx, h) })
	return true
}

func (k *campaign) lanCut() bool {
	node := k.pickNode()
	if node == "" {
		return false
	}
	h := k.c.node(node)
	k.inject("lan-cut", node, checker.Scope{Node: node}, k.between(2*time.Second, 20*time.Second),
		func() error { return k.c.n.CutLAN(k.ctx, h) },
		func() error { return k.c.n.RestoreLAN(k.ctx, h) })
	return true
}

// setAPI records the API server going down or coming back.
func (k *campaign) setAPI(up bool) {
	k.mu.Lock()
	k.apiDown = !up
	k.mu.Unlock()
	k.chk.APIState(now(), up)
}

func (k *campaign) apiUp() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return !k.apiDown
}

func (k *campaign) apiserverOutage(kind string, hold time.Duration) bool {
	if !k.claim("control-plane", false) {
		return false
	}
	k.inject(kind, "control-plane", checker.Scope{All: true}, hold,
		func() error { k.setAPI(false); cp.StopAPIServer(); return nil },
		func() error {
			err := cp.StartAPIServer(k.ctx)
			k.setAPI(true)
			return err
		})
	return true
}

func (k *campaign) apiserverRestart() bool { return k.apiserverOutage("apiserver-restart", 0) }

func (k *campaign) apiserverStop() bool {
	return k.apiserverOutage("apiserver-stop", k.between(15*time.Second, k.cfg.MaxAPIOutage))
}

func (k *campaign) etcdRestart() bool {
	if !k.claim("control-plane", false) {
		return false
	}
	k.inject("etcd-restart", "control-plane", checker.Scope{All: true}, 0,
		func() error { k.setAPI(false); return cp.RestartEtcd(k.ctx) },
		func() error { k.setAPI(true); return nil })
	return true
}

// servicesOfKind names the workload's Services of a kind (for the faults
// of the gateway's DHCP and UPnP servers).
func (k *campaign) servicesOfKind(kind string) []string {
	out := []string{}
	for _, s := range k.svcs {
		if s.kind == kind {
			out = append(out, s.name)
		}
	}
	return out
}

func (k *campaign) dhcpStop() bool {
	if !k.claim("dhcp", false) {
		return false
	}
	k.inject("dhcp-stop", "dhcp", checker.Scope{Services: k.servicesOfKind("dhcp")}, k.between(5*time.Second, 30*time.Second),
		func() error {
			k.mu.Lock()
			k.dhcpDown = true
			p := k.dnsmasq
			k.mu.Unlock()
			p.Kill()
			return nil
		},
		func() error {
			p, err := k.c.n.StartDHCP(k.ctx, lab.DHCPOptions{})
			k.mu.Lock()
			k.dnsmasq, k.dhcpDown = p, err != nil
			k.mu.Unlock()
			return err
		})
	return true
}

func (k *campaign) upnpStop() bool {
	if !k.claim("upnp", false) {
		return false
	}
	k.inject("upnp-stop", "upnp", checker.Scope{Services: k.servicesOfKind("upnp")}, k.between(5*time.Second, 30*time.Second),
		func() error { k.upnp.Kill(); return nil },
		func() error {
			p, err := k.c.n.StartUPnP(k.ctx, lab.UPnPOptions{Secure: true})
			if err == nil {
				k.upnp = p
			}
			return err
		})
	return true
}

// allocatorBurst creates five allocator Services at once and SIGKILLs the
// allocator's leader during the burst; it comes back 2 s later.
func (k *campaign) allocatorBurst() bool {
	if !k.apiUp() || len(k.svcs) > 60 {
		return false
	}
	node := k.allocatorLeader()
	if k.c.n.Node(node) == nil || !k.claim(node, true) {
		return false
	}
	var burst []*chaosSvc
	for range 5 {
		burst = append(burst, k.newSvc("auto"))
	}
	k.inject("allocator-burst", node, checker.Scope{Node: node}, 2*time.Second,
		func() error {
			for i, s := range burst {
				if i == 2 {
					k.expectExit(node).Kill()
				}
				if err := k.apply(s); err != nil {
					k.logf("burst: %v", err)
				}
			}
			return nil
		},
		func() error { return k.startAgent(node) })
	return true
}

// allocatorLeader is the node whose agent holds the allocator Lease.
func (k *campaign) allocatorLeader() string {
	ctx, cancel := context.WithTimeout(k.ctx, 2*time.Second)
	defer cancel()
	l, err := k.c.cs.CoordinationV1().Leases(k.c.ns).Get(ctx, "vigil-allocator", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return strings.TrimPrefix(*l.Spec.HolderIdentity, "vigil-")
}

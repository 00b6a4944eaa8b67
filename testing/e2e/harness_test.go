//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-lb/vigil/testing/lab"
)

var cp *lab.ControlPlane

func TestMain(m *testing.M) { os.Exit(lab.Main(m, &cp)) }

// Identity the agents run as: the DaemonSet's ServiceAccount, bound to the
// ClusterRole shipped in manifests/ (see rbac_test.go).
const agentUser = "system:serviceaccount:kube-system:vigil"

// cluster is one test's lab: nodes running vigil, a namespace for its
// Services, and helpers to drive and observe them.
type cluster struct {
	t          *testing.T
	ctx        context.Context
	n          *lab.Network
	cs         kubernetes.Interface
	ns         string
	kubeconfig string // node kubeconfig (agent identity)
	agents     map[string]*lab.Proc
	runs       int
	env        []string // extra env for every agent
	bin        string
	crashedMu  sync.Mutex
	crashed    map[string]bool
}

func vigilBin(t *testing.T) string {
	t.Helper()
	bin, err := lab.VigilBinary(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// newCluster builds a lab with n nodes and a fresh namespace; agents are not
// started (startAll / startAgent). $VIGIL_E2E_AGENT_ENV (space-separated
// variables, e.g. "vigil_election_mode=node") goes to every agent first:
// it reruns the lab tests in another mode.
func newCluster(t *testing.T, nodes int, env ...string) *cluster {
	t.Helper()
	env = append(strings.Fields(os.Getenv("VIGIL_E2E_AGENT_ENV")), env...)
	lab.Require(t, cp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	cs, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	ensureRBAC(t, ctx)
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the network, so it runs after the agents stopped:
	// the lab has no namespace controller, and a Service a test leaves
	// behind keeps its address, which a later test's pool or static
	// address would then find taken.
	t.Cleanup(func() { deleteServices(t, cs, ns.Name) })
	kc, err := cp.NodeKubeconfig("agent-"+ns.Name, agentUser, "system:serviceaccounts", "system:serviceaccounts:kube-system")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{
		t: t, ctx: ctx, cs: cs, ns: ns.Name, kubeconfig: kc,
		n:      lab.NewTestNetwork(t, cp, lab.Options{Nodes: nodes}),
		agents: map[string]*lab.Proc{}, env: env,
	}
	return c
}

// deleteServices deletes every Service in the namespace (one by one: not
// every API server version serves deletecollection for Services).
func deleteServices(t *testing.T, cs kubernetes.Interface, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("clean up the Services of %s: %v", ns, err)
		return
	}
	for _, s := range list.Items {
		if err := cs.CoreV1().Services(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("clean up Service %s/%s: %v", ns, s.Name, err)
		}
	}
}

func (c *cluster) node(name string) *lab.Host {
	h := c.n.Node(name)
	if h == nil {
		c.t.Fatalf("no node %s", name)
	}
	return h
}

// startAgent runs `vigil manager` on node with kube-vip style environment.
func (c *cluster) startAgent(name string, env ...string) *lab.Proc {
	c.t.Helper()
	c.runs++
	if c.bin == "" {
		c.bin = vigilBin(c.t)
	}
	p, err := c.n.StartAgent(c.node(name), lab.AgentOptions{
		Binary: c.bin, Kubeconfig: c.kubeconfig, Namespace: c.ns,
		Env: append(append([]string(nil), c.env...), env...), Run: c.runs,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.agents[name] = p
	return p
}

// startAll starts an agent on every node and waits until all are ready.
func (c *cluster) startAll(env ...string) {
	for _, h := range c.n.Nodes {
		c.startAgent(h.Name, env...)
	}
	for _, h := range c.n.Nodes {
		c.waitReady(h.Name)
	}
}

// waitReady waits for the node's agent to answer /healthz (caches synced).
func (c *cluster) waitReady(name string) {
	c.t.Helper()
	if err := c.n.WaitAgentReady(c.ctx, c.node(name), c.agents[name], 15*time.Second); err != nil {
		c.t.Fatal(err)
	}
}

type svcOpt func(*corev1.Service)

func withPorts(ports ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, TargetPort: intstr.FromInt32(p), Protocol: corev1.ProtocolTCP})
		}
	}
}

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withLocal() svcOpt {
	return func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
}

// createService creates a LoadBalancer Service asking for ips (spec.loadBalancerIP
// for one address, the kube-vip annotation for several).
func (c *cluster) createService(name string, ips []string, opts ...svcOpt) *corev1.Service {
	c.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
		},
	}
	withPorts(8080)(svc)
	switch len(ips) {
	case 0:
	case 1:
		svc.Spec.LoadBalancerIP = ips[0]
	default:
		withAnnotation("kube-vip.io/loadbalancerIPs", strings.Join(ips, ","))(svc)
	}
	for _, o := range opts {
		o(svc)
	}
	out, err := c.cs.CoreV1().Services(c.ns).Create(c.ctx, svc, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// setEndpoints makes the Service's EndpointSlice list one ready endpoint on
// each of nodes (replacing what was there).
func (c *cluster) setEndpoints(service string, nodes ...string) {
	c.t.Helper()
	ready := true
	var eps []discoveryv1.Endpoint
	for i, n := range nodes {
		n := n
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.244.%d.%d", i+1, 10)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			NodeName:   &n,
		})
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: service + "-vigil-e2e", Namespace: c.ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
	cur, err := c.cs.DiscoveryV1().EndpointSlices(c.ns).Get(c.ctx, slice.Name, metav1.GetOptions{})
	if err == nil {
		cur.Endpoints = eps
		_, err = c.cs.DiscoveryV1().EndpointSlices(c.ns).Update(c.ctx, cur, metav1.UpdateOptions{})
	} else {
		_, err = c.cs.DiscoveryV1().EndpointSlices(c.ns).Create(c.ctx, slice, metav1.CreateOptions{})
	}
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) allNodes() []string {
	var out []string
	for _, h := range c.n.Nodes {
		out = append(out, h.Name)
	}
	return out
}

// owner asks the client which node answers for ip now ("" = nobody).
func (c *cluster) owner(ip netip.Addr) string {
	mac, err := c.n.ResolveMAC(c.ctx, ip)
	if err != nil {
		return ""
	}
	return c.n.HostByMAC(mac)
}

// waitOwner waits until the client's ARP/NDP for ip is answered by a node
// other than not (and, if want != "", by want). It returns that node and how
// long it took.
func (c *cluster) waitOwner(ip netip.Addr, want, not string, within time.Duration) (string, time.Duration) {
	c.t.Helper()
	start := time.Now()
	var got string
	err := lab.WaitFor(c.ctx, within, func() bool {
		got = c.owner(ip)
		return got != "" && got != not && (want == "" || got == want)
	})
	if err != nil {
		c.t.Fatalf("%s: owner is %q after %v, want %q (not %q)", ip, got, within, want, not)
	}
	return got, time.Since(start)
}

// waitNoOwner waits until nobody answers for ip.
func (c *cluster) waitNoOwner(ip netip.Addr, within time.Duration) {
	c.t.Helper()
	var got string
	if err := lab.WaitFor(c.ctx, within, func() bool { got = c.owner(ip); return got == "" }); err != nil {
		c.t.Fatalf("%s still answered by %s after %v", ip, got, within)
	}
}

// nodesWith lists the nodes that have ip bound on an interface.
func (c *cluster) nodesWith(ip netip.Addr) []string {
	var out []string
	for _, h := range c.n.Nodes {
		o, err := c.n.Exec(c.ctx, h, "ip", "-o", "addr", "show")
		if err != nil {
			c.t.Fatal(err)
		}
		for _, f := range strings.Fields(o) {
			if pfx, err := netip.ParsePrefix(f); err == nil && pfx.Addr() == ip {
				out = append(out, h.Name)
				break
			}
		}
	}
	return out
}

func (c *cluster) service(name string) *corev1.Service {
	c.t.Helper()
	s, err := c.cs.CoreV1().Services(c.ns).Get(c.ctx, name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// waitService waits until cond holds for the Service.
func (c *cluster) waitService(name string, within time.Duration, what string, cond func(*corev1.Service) bool) *corev1.Service {
	c.t.Helper()
	var s *corev1.Service
	if err := lab.WaitFor(c.ctx, within, func() bool { s = c.service(name); return cond(s) }); err != nil {
		c.t.Fatalf("service %s: %s not reached in %v; status %+v annotations %v", name, what, within, s.Status, s.Annotations)
	}
	return s
}

func ingressIPs(s *corev1.Service) []string {
	var out []string
	for _, i := range s.Status.LoadBalancer.Ingress {
		out = append(out, i.IP)
	}
	return out
}

func condition(s *corev1.Service, typ string) *metav1.Condition {
	for i := range s.Status.Conditions {
		if s.Status.Conditions[i].Type == typ {
			return &s.Status.Conditions[i]
		}
	}
	return nil
}

// events lists the reasons of Events about a Service.
func (c *cluster) events(name string) []corev1.Event {
	l, err := c.cs.CoreV1().Events(c.ns).List(c.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		c.t.Fatal(err)
	}
	return l.Items
}

func (c *cluster) waitEvent(name, reason string, within time.Duration) corev1.Event {
	c.t.Helper()
	var found corev1.Event
	if err := lab.WaitFor(c.ctx, within, func() bool {
		for _, e := range c.events(name) {
			if e.Reason == reason {
				found = e
				return true
			}
		}
		return false
	}); err != nil {
		c.t.Fatalf("no %s event for %s within %v: %+v", reason, name, within, c.events(name))
	}
	return found
}

// serveAll runs a greeting TCP server on port on every node.
func (c *cluster) serveAll(port uint16) {
	for _, h := range c.n.Nodes {
		if _, err := c.n.Serve(h, port); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *cluster) kubectl(args ...string) string {
	c.t.Helper()
	out, err := exec.CommandContext(c.ctx, "kubectl", append([]string{"--kubeconfig", cp.AdminKubeconfig, "-n", c.ns}, args...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// firstAnnouncerOtherThan waits for the first GARP/NA of ip after since from
// a node other than not.
func (c *cluster) firstAnnouncerOtherThan(capture *lab.Capture, ip netip.Addr, not string, since time.Time, within time.Duration) lab.Announcement {
	c.t.Helper()
	notMAC := c.node(not).MAC.String()
	var got lab.Announcement
	err := lab.WaitFor(c.ctx, within, func() bool {
		for _, e := range capture.Events() {
			if e.Addr == ip && e.Announces() && e.SrcMAC != notMAC && e.Time.After(since) && (e.Op == "garp" || e.Op == "na") {
				got = e
				return true
			}
		}
		return false
	})
	if err != nil {
		c.t.Fatalf("no node other than %s announced %s within %v", not, ip, within)
	}
	return got
}

// crash kills the node's agent and pulls its cable: the node is gone, its
// kernel still holding whatever addresses it had.
func (c *cluster) crash(name string) {
	c.t.Helper()
	c.crashedMu.Lock()
	if c.crashed == nil {
		c.crashed = map[string]bool{}
	}
	c.crashed[name] = true
	c.crashedMu.Unlock()
	c.agents[name].Kill()
	if err := c.n.CutLAN(c.ctx, c.node(name)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) isCrashed(name string) bool {
	c.crashedMu.Lock()
	defer c.crashedMu.Unlock()
	return c.crashed[name]
}

// announced creates Service name for ip with ready endpoints on every node
// and returns the node that ends up answering for ip.
func (c *cluster) announced(name string, ip netip.Addr, opts ...svcOpt) string {
	c.t.Helper()
	c.setEndpoints(name, c.allNodes()...)
	c.createService(name, []string{ip.String()}, opts...)
	holder, _ := c.waitOwner(ip, "", "", 5*time.Second)
	return holder
}

// watchAtMostOne samples which nodes have something every 25 ms until the
// test ends, and fails the test if it ever saw more than one.
func (c *cluster) watchAtMostOne(what string, sample func() []string) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(25 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if on := sample(); len(on) > 1 {
				mu.Lock()
				worst = on
				mu.Unlock()
			}
		}
	}()
	c.t.Cleanup(func() {
		close(stop)
		wg.Wait()
		if worst != nil {
			c.t.Errorf("%s on %v at the same time", what, worst)
		}
	})
}

func (c *cluster) dynamic() dynamic.Interface {
	c.t.Helper()
	cfg, err := lab.RESTConfig(cp.AdminKubeconfig)
	if err != nil {
		c.t.Fatal(err)
	}
	return dynamic.NewForConfigOrDie(cfg)
}

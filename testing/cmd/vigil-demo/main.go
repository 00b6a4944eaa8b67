// Command vigil-demo is `make demo`: it brings up the lab (a real
// kube-apiserver + etcd and three node namespaces running `vigil manager`),
// exposes a Deployment as a LoadBalancer Service the way the kube-vip docs
// do, connects to it from a client namespace, then crashes the holder and
// gracefully stops the next one to show the VIP move. Everything is cleaned
// up at the end. Needs root.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-lb/vigil/testing/lab"
)

const (
	vip       = "198.18.0.100"
	namespace = "demo"
	agentUser = "system:serviceaccount:kube-system:vigil"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...)
}

func run(ctx context.Context) error {
	if why := lab.Missing(); why != "" {
		return fmt.Errorf("%s", why)
	}
	dir, err := os.MkdirTemp("", "vigil-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("Control plane: kube-apiserver %s + etcd %s on 127.0.0.1 (the first run builds them from the Go module proxy: ~8 min on 2 cores)", lab.KubeVersion, lab.EtcdVersion)
	start := time.Now()
	cp, err := lab.StartControlPlane(ctx, dir)
	if err != nil {
		return err
	}
	defer cp.Stop()
	fmt.Printf("ready at %s after %v\n", cp.Host, time.Since(start).Round(time.Millisecond))
	cs, err := cp.Client()
	if err != nil {
		return err
	}
	kubectl := func(args ...string) (string, error) {
		fmt.Printf("$ kubectl %s\n", strings.Join(args, " "))
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", cp.AdminKubeconfig, "-n", namespace}, args...)...).CombinedOutput()
		s := strings.TrimRight(string(out), "\n")
		if s != "" {
			fmt.Println(indent(s))
		}
		return s, err
	}

	step("Building vigil")
	bin, err := lab.VigilBinary(ctx, dir)
	if err != nil {
		return err
	}
	fmt.Println(bin)

	step("Installing RBAC from manifests/daemonset.yaml (the agents run as that ServiceAccount)")
	if err := cp.ApplyManifest(ctx, "manifests/daemonset.yaml"); err != nil {
		return err
	}

	step("Lab network: node1..node3, a client and a gateway on a bridge (198.18.0.0/24)")
	n, err := lab.NewNetwork(ctx, dir, lab.Options{Nodes: 3, APIPort: cp.Port})
	if err != nil {
		return err
	}
	defer n.Close()
	for _, h := range n.Nodes {
		fmt.Printf("  %-6s %-13s %s\n", h.Name, h.IPv4, h.MAC)
		if _, err := n.Serve(h, 80); err != nil { // stands in for the pods: answers with the node's name
			return err
		}
	}
	fmt.Printf("  %-6s %-13s %s\n", n.Client.Name, n.Client.IPv4, n.Client.MAC)

	step("Starting `vigil manager` on every node (kube-vip env: svc_enable, svc_election, vip_interface …)")
	kc, err := cp.NodeKubeconfig("demo-agent", agentUser, "system:serviceaccounts", "system:serviceaccounts:kube-system")
	if err != nil {
		return err
	}
	agents := map[string]*lab.Proc{}
	for _, h := range n.Nodes {
		p, err := n.StartAgent(h, lab.AgentOptions{Binary: bin, Kubeconfig: kc, Namespace: namespace, Env: []string{"vigil_log_level=info"}})
		if err != nil {
			return err
		}
		agents[h.Name] = p
	}
	for _, h := range n.Nodes {
		if err := n.WaitAgentReady(ctx, h, agents[h.Name], 20*time.Second); err != nil {
			return err
		}
	}
	fmt.Println("all three agents ready")

	step("A Deployment, exposed as in the kube-vip docs")
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := kubectl("create", "deployment", "web", "--image=nginx"); err != nil {
		return err
	}
	fmt.Println("  (no kubelet here: the demo marks the pods' endpoints ready on all nodes itself)")
	if err := readyEndpoints(ctx, cs, "web", "node1", "node2", "node3"); err != nil {
		return err
	}
	created := time.Now()
	if _, err := kubectl("expose", "deployment", "web", "--type=LoadBalancer", "--load-balancer-ip="+vip, "--port=80"); err != nil {
		return err
	}
	addr := netip.MustParseAddr(vip)
	holder, err := waitOwner(ctx, n, addr, "")
	if err != nil {
		return err
	}
	fmt.Printf("client's ARP for %s answered by %s %v after expose\n", vip, holder, time.Since(created).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond) // let the status write land before showing it
	if _, err := kubectl("get", "svc", "web"); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, bin, "status", "--kubeconfig", cp.AdminKubeconfig, "-n", namespace).CombinedOutput(); err == nil {
		fmt.Printf("$ vigil status -n %s\n%s\n", namespace, indent(strings.TrimRight(string(out), "\n")))
	}
	if err := curl(ctx, n, addr); err != nil {
		return err
	}

	step("Crash: SIGKILL the agent on %s and pull its cable", holder)
	crash := time.Now()
	agents[holder].Kill()
	if err := n.CutLAN(ctx, n.Node(holder)); err != nil {
		return err
	}
	next, err := waitOwner(ctx, n, addr, holder)
	if err != nil {
		return err
	}
	fmt.Printf("%s now answers for %s, %v after the crash (lease duration 5s)\n", next, vip, time.Since(crash).Round(time.Millisecond))
	if err := curl(ctx, n, addr); err != nil {
		return err
	}

	step("Graceful: SIGTERM the agent on %s", next)
	term := time.Now()
	if took, ok := agents[next].Stop(5 * time.Second); !ok {
		return fmt.Errorf("agent on %s did not stop in 5s", next)
	} else {
		fmt.Printf("agent on %s withdrew its VIP, released its lease and exited in %v\n", next, took.Round(time.Millisecond))
	}
	third, err := waitOwner(ctx, n, addr, next)
	if err != nil {
		return err
	}
	fmt.Printf("%s now answers for %s, %v after SIGTERM\n", third, vip, time.Since(term).Round(time.Millisecond))
	if err := curl(ctx, n, addr); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := kubectl("get", "svc", "web", "-o", "custom-columns=NAME:.metadata.name,EXTERNAL-IP:.status.loadBalancer.ingress[0].ip,HOLDER:.metadata.annotations.kube-vip\\.io/vipHost"); err != nil {
		return err
	}

	step("Cleaning up: agents, namespaces, control plane")
	return nil
}

// waitOwner polls the client's ARP until a node other than not answers.
func waitOwner(ctx context.Context, n *lab.Network, addr netip.Addr, not string) (string, error) {
	var got string
	err := lab.WaitFor(ctx, 20*time.Second, func() bool {
		mac, err := n.ResolveMAC(ctx, addr)
		if err != nil {
			return false
		}
		got = n.HostByMAC(mac)
		return got != "" && got != not
	})
	if err != nil {
		return "", fmt.Errorf("nobody but %q answers for %s: %w", not, addr, err)
	}
	return got, nil
}

func curl(ctx context.Context, n *lab.Network, addr netip.Addr) error {
	got, err := n.Dial(ctx, addr, 80)
	if err != nil {
		return fmt.Errorf("client -> %s:80: %w", addr, err)
	}
	fmt.Printf("client -> %s:80 answered by %s\n", addr, got)
	return nil
}

func readyEndpoints(ctx context.Context, cs kubernetes.Interface, svc string, nodes ...string) error {
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-demo", Namespace: namespace, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, node := range nodes {
		node := node
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{fmt.Sprintf("10.244.%d.10", i+1)}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	_, err := cs.DiscoveryV1().EndpointSlices(namespace).Create(ctx, slice, metav1.CreateOptions{})
	return err
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

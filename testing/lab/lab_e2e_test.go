//go:build e2e

package lab_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-lb/vigil/testing/lab"
)

var cp *lab.ControlPlane

func TestMain(m *testing.M) { os.Exit(lab.Main(m, &cp)) }

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// The control plane serves client-go with RBAC on: an admin creates a
// Namespace, a LoadBalancer Service and a Lease; a restricted user gets 403.
func TestControlPlane(t *testing.T) {
	lab.Require(t, cp)
	ctx := ctxFor(t, time.Minute)
	cs, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "smoke-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services(ns.Name).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP == "" {
		t.Errorf("service got no cluster IP")
	}
	holder := "node1"
	if _, err := cs.CoordinationV1().Leases(ns.Name).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "kubevip-web"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	kc, err := cp.Kubeconfig("nobody", "nobody", "lab-users")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := lab.RESTConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	restricted := kubernetes.NewForConfigOrDie(cfg)
	_, err = restricted.CoreV1().Services(ns.Name).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("restricted user listing services: got %v, want 403 Forbidden", err)
	}

	// kubectl on PATH works against it too.
	if _, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", cp.AdminKubeconfig, "-n", ns.Name, "get", "svc", "web", "-o", "name").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "service/web") {
			t.Errorf("kubectl get svc: %v: %s", err, out)
		}
	}
}

// The network: an address added in node2 resolves from the client to node2's
// MAC and a TCP connection reaches node2; IPv6 via NDP; a gratuitous ARP shows
// up in the capture; a node cut off from the API gets errors while its LAN
// keeps working.
func TestNetwork(t *testing.T) {
	lab.Require(t, cp)
	ctx := ctxFor(t, 2*time.Minute)
	n := lab.NewTestNetwork(t, cp, lab.Options{Nodes: 3})
	node1, node2, node3 := n.Nodes[0], n.Nodes[1], n.Nodes[2]

	capture, err := n.StartCapture(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr("198.18.0.100")
	if _, err := n.Exec(ctx, node2, "ip", "addr", "add", vip.String()+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	mac, err := n.ResolveMAC(ctx, vip)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mac.String(), node2.MAC.String(); got != want {
		t.Errorf("ARP for %s answered by %s (%s), want node2 %s", vip, got, n.HostByMAC(mac), want)
	}
	if _, err := n.Serve(node2, 8080); err != nil {
		t.Fatal(err)
	}
	if got, err := n.Dial(ctx, vip, 8080); err != nil || got != "node2" {
		t.Errorf("TCP to %s:8080 = %q, %v; want node2", vip, got, err)
	}

	// A gratuitous ARP from node2 is captured with node2's MAC.
	if _, err := n.Exec(ctx, node2, "arping", "-U", "-c1", "-I", "eth0", vip.String()); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitFor(ctx, 3*time.Second, func() bool { return len(capture.Announcers(vip)[node2.MAC.String()]) > 0 }); err != nil {
		t.Errorf("gratuitous ARP from node2 not captured; events: %+v", capture.Events())
	}
	if got := capture.Announcers(vip); len(got) != 1 {
		t.Errorf("announcers of %s = %v, want only node2", vip, got)
	}

	vip6 := netip.MustParseAddr("fd00:1ab::100")
	if _, err := n.Exec(ctx, node3, "ip", "addr", "add", vip6.String()+"/128", "dev", "eth0", "nodad"); err != nil {
		t.Fatal(err)
	}
	mac, err = n.ResolveMAC(ctx, vip6)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mac.String(), node3.MAC.String(); got != want {
		t.Errorf("NDP for %s answered by %s, want node3 %s", vip6, got, want)
	}

	// API reachability through the forwarder, and a cut.
	kc, err := cp.NodeKubeconfig("node1", "vigil-lab-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func() error {
		_, err := n.Exec(ctx, node1, "kubectl", "--kubeconfig", kc, "--request-timeout=2s", "get", "--raw", "/readyz")
		return err
	}
	if err := kubectl(); err != nil {
		t.Fatalf("node1 cannot reach the API: %v", err)
	}
	if _, err := n.Serve(node1, 8081); err != nil {
		t.Fatal(err)
	}
	if err := n.CutAPI(ctx, node1); err != nil {
		t.Fatal(err)
	}
	if err := kubectl(); err == nil {
		t.Errorf("node1 reached the API while cut off")
	}
	if got, err := n.Dial(ctx, node1.IPv4, 8081); err != nil || got != "node1" {
		t.Errorf("LAN to node1 while its API is cut = %q, %v; want node1", got, err)
	}
	if err := n.RestoreAPI(ctx, node1); err != nil {
		t.Fatal(err)
	}
	if err := kubectl(); err != nil {
		t.Errorf("node1 cannot reach the API after restore: %v", err)
	}

	// Pulling node1's cable cuts its LAN.
	if err := n.CutLAN(ctx, node1); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Dial(ctx, node1.IPv4, 8081); err == nil {
		t.Errorf("reached node1 with its cable pulled")
	}
	if err := n.RestoreLAN(ctx, node1); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitFor(ctx, 5*time.Second, func() bool { _, err := n.Dial(ctx, node1.IPv4, 8081); return err == nil }); err != nil {
		t.Errorf("node1 unreachable after its cable is back")
	}
}

// The gateway: dnsmasq leases an address to a macvlan from its range, and
// miniupnpd (secure mode) maps a port that the WAN host can reach.
func TestGateway(t *testing.T) {
	lab.Require(t, cp)
	ctx := ctxFor(t, 2*time.Minute)
	n := lab.NewTestNetwork(t, cp, lab.Options{Nodes: 1})

	if _, err := n.StartDHCP(ctx, lab.DHCPOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Exec(ctx, n.Client, "ip", "link", "add", "mv0", "link", "eth0", "address", "02:00:00:00:aa:01", "type", "macvlan", "mode", "bridge"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Exec(ctx, n.Client, "ip", "link", "set", "mv0", "up"); err != nil {
		t.Fatal(err)
	}
	out, err := n.Exec(ctx, n.Client, "busybox", "udhcpc", "-i", "mv0", "-n", "-q", "-f", "-t", "3", "-T", "1", "-s", "/bin/true", "-x", "hostname:smoke")
	if err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, out)
	}
	leases, err := n.Leases()
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 1 || leases[0].MAC != "02:00:00:00:aa:01" || leases[0].IP.Less(lab.DHCPFirst) || lab.DHCPLast.Less(leases[0].IP) || leases[0].Hostname != "smoke" {
		t.Errorf("leases = %+v, want one for 02:00:00:00:aa:01 named smoke in %s-%s", leases, lab.DHCPFirst, lab.DHCPLast)
	}

	if _, err := n.StartUPnP(ctx, lab.UPnPOptions{Secure: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Serve(n.Client, 8080); err != nil {
		t.Fatal(err)
	}
	out, err = n.Exec(ctx, n.Client, "upnpc", "-u", n.UPnPRootDesc(), "-e", "smoke", "-a", n.Client.IPv4.String(), "8080", "18080", "TCP")
	if err != nil {
		t.Fatalf("upnpc add: %v\n%s", err, out)
	}
	ms, err := n.Mappings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := lab.Mapping{Proto: "TCP", ExternalPort: 18080, Internal: netip.AddrPortFrom(n.Client.IPv4, 8080), Description: "smoke"}
	if !slices.Contains(ms, want) {
		t.Errorf("mappings = %+v, want %+v", ms, want)
	}
	if got, err := n.DialFromWAN(ctx, netip.MustParseAddr("198.19.0.1"), 18080); err != nil || got != "client" {
		t.Errorf("WAN to gateway:18080 = %q, %v; want client", got, err)
	}
	// Secure mode refuses a mapping to someone else's address.
	if out, err := n.Exec(ctx, n.Client, "upnpc", "-u", n.UPnPRootDesc(), "-e", "smoke", "-a", n.Nodes[0].IPv4.String(), "8080", "18081", "TCP"); err == nil && !strings.Contains(out, "failed") {
		t.Errorf("secure mode accepted a mapping for another host:\n%s", out)
	}
}

// Close removes every namespace and process the lab made.
func TestCleanup(t *testing.T) {
	lab.Require(t, cp)
	ctx := ctxFor(t, time.Minute)
	n, err := lab.NewNetwork(ctx, t.TempDir(), lab.Options{Nodes: 2, APIPort: cp.Port})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.StartDHCP(ctx, lab.DHCPOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := n.Start(n.Nodes[0], "sleeper", nil, "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if !p.Exited() {
		t.Errorf("process in a node namespace still running after Close")
	}
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), n.ID) {
		t.Errorf("namespaces left after Close:\n%s", out)
	}
}

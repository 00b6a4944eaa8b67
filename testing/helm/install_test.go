//go:build e2e

package helm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/testing/lab"
)

var cp *lab.ControlPlane

func TestMain(m *testing.M) { os.Exit(lab.Main(m, &cp)) }

// helmBinary returns $VIGIL_HELM or the cached build; it skips (fails
// under VIGIL_E2E_REQUIRED=1) when neither exists.
func helmBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("VIGIL_HELM")
	if bin == "" {
		out, err := exec.Command("bash", filepath.Join(lab.RepoRoot(), "testing", "helm", "build.sh"), "--path").Output()
		if err != nil {
			t.Fatal(err)
		}
		bin = strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("VIGIL_E2E_REQUIRED") == "1" {
			t.Fatalf("no helm binary: %v", err)
		}
		t.Skipf("no helm binary at %s: build it with `bash testing/helm/build.sh` or set VIGIL_HELM", bin)
	}
	return bin
}

// run runs a command against the lab's API server and returns its output.
func run(t *testing.T, ctx context.Context, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cp.AdminKubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The chart installs on a real API server, CRDs first, with IPPool, BGPPeer
// and BGPAdvertisement objects from values (the API server validates them
// against the CRDs' schemas); helm upgrade changes the agents' settings;
// the documented CRD upgrade (kubectl apply --server-side of the chart's
// crds/) applies over the CRDs Helm created; helm uninstall keeps the
// CRDs, as Helm does.
func TestHelmInstall(t *testing.T) {
	lab.Require(t, cp)
	helm := helmBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	chart := filepath.Join(lab.RepoRoot(), "charts", "vigil")
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
interface: eth0
allocator: true
pools:
  - name: lan
    spec: {addresses: ["192.168.1.240-192.168.1.250"], autoAssign: true}
bgp:
  enabled: true
  as: 65010
  peerObjects:
    - name: tor
      spec: {myASN: 65010, peerAddress: 192.168.1.1, peerASN: 64512}
  advertisements:
    - name: all
      spec: {communities: ["65000:100"]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, helm, "install", "vigil", chart, "--namespace", "kube-system", "--values", values, "--wait=false")
	for _, obj := range []string{"daemonset/vigil", "serviceaccount/vigil", "role/vigil", "rolebinding/vigil"} {
		run(t, ctx, "kubectl", "-n", "kube-system", "get", obj)
	}
	for _, obj := range []string{"clusterrole/vigil", "clusterrolebinding/vigil", "ippool/lan", "bgppeer/tor", "bgpadvertisement/all",
		"crd/ippools.vigil.io", "crd/bgppeers.vigil.io", "crd/bgpadvertisements.vigil.io", "crd/bfdprofiles.vigil.io", "crd/l2advertisements.vigil.io"} {
		run(t, ctx, "kubectl", "get", obj)
	}
	env := func() string {
		return run(t, ctx, "kubectl", "-n", "kube-system", "get", "daemonset/vigil", "-o",
			`jsonpath={range .spec.template.spec.containers[0].env[*]}{.name}={.value}{"\n"}{end}`)
	}
	if got := env(); !strings.Contains(got, "vip_interface=eth0\n") || !strings.Contains(got, "bgp_as=65010\n") {
		t.Errorf("installed DaemonSet env lacks the values:\n%s", got)
	}

	run(t, ctx, helm, "upgrade", "vigil", chart, "--namespace", "kube-system", "--values", values, "--set", "interface=eth1,leaseDuration=15,renewDeadline=10,retryPeriod=2")
	if got := env(); !strings.Contains(got, "vip_interface=eth1\n") || !strings.Contains(got, "vip_leaseduration=15\n") {
		t.Errorf("upgraded DaemonSet env lacks the new values:\n%s", got)
	}
	// docs/configuration.md, "Upgrading the CRDs".
	run(t, ctx, "kubectl", "apply", "--server-side", "--force-conflicts", "-f", filepath.Join(chart, "crds"))

	run(t, ctx, helm, "uninstall", "vigil", "--namespace", "kube-system")
	run(t, ctx, "kubectl", "get", "crd/ippools.vigil.io", "crd/bgppeers.vigil.io")
	if out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", cp.AdminKubeconfig, "-n", "kube-system", "get", "daemonset/vigil").CombinedOutput(); err == nil {
		t.Errorf("the DaemonSet outlived helm uninstall:\n%s", out)
	}
}

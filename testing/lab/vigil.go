package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// RepoRoot is the vigil source tree this package was built from.
func RepoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(self), "..", ".."))
}

// VigilBinary returns $VIGIL_BIN, or builds cmd/vigil into dir.
func VigilBinary(ctx context.Context, dir string) (string, error) {
	if b := os.Getenv("VIGIL_BIN"); b != "" {
		return b, nil
	}
	bin := filepath.Join(dir, "vigil")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/vigil")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build vigil: %w\n%s", err, out)
	}
	return bin, nil
}

// AgentOptions says how to run `vigil manager` on a lab node.
type AgentOptions struct {
	Binary     string
	Kubeconfig string   // a NodeKubeconfig (API at 127.0.0.1:6443 in the node)
	Namespace  string   // svc_namespace and vip_leasenamespace
	Env        []string // extra kube-vip style variables
	Run        int      // distinguishes log files of restarts
}

// StartAgent runs `vigil manager` in h's namespace, configured the way a
// kube-vip user would: environment variables only. Its VIP journal lives in
// the run directory, per node, so it survives restarts of the agent.
func (n *Network) StartAgent(h *Host, o AgentOptions) (*Proc, error) {
	env := []string{
		"vip_nodename=" + h.Name,
		"k8s_config_file=" + o.Kubeconfig,
		"svc_enable=true",
		"svc_election=true",
		"vip_interface=eth0",
		"prometheus_server=127.0.0.1:2112",
		"vigil_state_file=" + filepath.Join(n.Dir, h.Name+".vips.json"),
		"vigil_log_level=debug",
	}
	if o.Namespace != "" {
		env = append(env, "svc_namespace="+o.Namespace, "vip_leasenamespace="+o.Namespace)
	}
	env = append(env, o.Env...)
	return n.Start(h, fmt.Sprintf("vigil-%s-%d", h.Name, o.Run), env, o.Binary, "manager")
}

// WaitAgentReady waits until the agent on h answers /healthz with 200.
func (n *Network) WaitAgentReady(ctx context.Context, h *Host, p *Proc, within time.Duration) error {
	err := WaitFor(ctx, within, func() bool {
		if p.Exited() {
			return true
		}
		code, _, err := n.HTTPGet(ctx, h, "http://127.0.0.1:2112/healthz")
		return err == nil && code == 200
	})
	if p.Exited() {
		return fmt.Errorf("agent on %s exited: %v\n%s", h.Name, p.Err(), tail(p.Log(), 4000))
	}
	if err != nil {
		return fmt.Errorf("agent on %s not ready: %w\n%s", h.Name, err, tail(p.Log(), 4000))
	}
	return nil
}

// ApplyManifest runs kubectl apply -f for a file of the repository (e.g.
// manifests/daemonset.yaml) with the admin kubeconfig.
func (cp *ControlPlane) ApplyManifest(ctx context.Context, rel string) error {
	out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", cp.AdminKubeconfig, "apply", "-f", filepath.Join(RepoRoot(), rel)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl apply -f %s: %w\n%s", rel, err, out)
	}
	return nil
}

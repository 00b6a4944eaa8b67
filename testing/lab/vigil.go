package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// RepoRoot is the vigil source tree this package was built from.
func RepoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(self), "..", ".."))
}

// VigilBinary returns $VIGIL_BIN, or builds cmd/vigil into dir (with
// cmd/vigil-bgp beside it, which a manager with bgp_enable execs into).
func VigilBinary(ctx context.Context, dir string) (string, error) {
	if b := os.Getenv("VIGIL_BIN"); b != "" {
		return b, nil
	}
	bin := filepath.Join(dir, "vigil")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/vigil", "./cmd/vigil-bgp")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build vigil: %w\n%s", err, out)
	}
	return bin, nil
}

// AgentOptions says how to run `vigil manager` on a lab node.
type AgentOptions struct {
	Binary     string
	Kubeconfig string // a NodeKubeconfig (API at 127.0.0.1:6443 in the node)
	// Root, if set, is a container image's root filesystem (make image):
	// the agent runs chrooted in it with its own /proc, /proc/sys read-only
	// as runc mounts it, and Binary and Kubeconfig are paths inside it (see
	// ImageRoot).
	Root      string
	Namespace string   // svc_namespace and vip_leasenamespace
	Env       []string // extra kube-vip style variables
	Run       int      // distinguishes log files of restarts
}

// StartAgent runs `vigil manager` in h's namespace, configured the way a
// kube-vip user would: environment variables only. Its VIP journal lives in
// the network's StateDir, per node, so it survives restarts of the agent.
func (n *Network) StartAgent(h *Host, o AgentOptions) (*Proc, error) {
	state, argv := filepath.Join(n.StateDir, h.Name+".vips.json"), []string{o.Binary, "manager"}
	if o.Root != "" {
		state = "/" + h.Name + ".vips.json"
		argv = append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount -t proc proc "$0/proc" && mount --bind "$0/proc/sys" "$0/proc/sys" && mount -o remount,bind,ro "$0/proc/sys" && exec chroot "$0" "$@"`, o.Root}, argv...)
	}
	env := []string{
		"vip_nodename=" + h.Name,
		"k8s_config_file=" + o.Kubeconfig,
		"svc_enable=true",
		"svc_election=true",
		"vip_interface=eth0",
		"prometheus_server=127.0.0.1:2112",
		"vigil_state_file=" + state,
		"vigil_log_level=debug",
	}
	if o.Namespace != "" {
		env = append(env, "svc_namespace="+o.Namespace, "vip_leasenamespace="+o.Namespace)
	}
	env = append(env, o.Env...)
	return n.Start(h, fmt.Sprintf("vigil-%s-%d", h.Name, o.Run), env, argv...)
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

// ImageRoot copies the image root filesystem rootfs (make image writes
// bin/image/linux-<arch>/rootfs) to dir, adds a /proc mount point and the
// kubeconfig (certificates embedded) as /kubeconfig, for
// AgentOptions.Root. The copy keeps the build's tree untouched.
func ImageRoot(ctx context.Context, rootfs, kubeconfig, dir string) (string, error) {
	root := filepath.Join(dir, "rootfs")
	if out, err := exec.CommandContext(ctx, "cp", "-a", rootfs, root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy %s: %w\n%s", rootfs, err, out)
	}
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o555); err != nil {
		return "", err
	}
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	if err := clientcmd.WriteToFile(*cfg, filepath.Join(root, "kubeconfig")); err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	return root, nil
}

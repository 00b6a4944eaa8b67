//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"k8s.io/client-go/kubernetes"
)

// ensureRBAC applies manifests/daemonset.yaml as shipped (ServiceAccount,
// ClusterRole, ClusterRoleBinding, DaemonSet): every agent in these tests runs
// as that ServiceAccount, so the tests prove the shipped ClusterRole is enough.
func ensureRBAC(t *testing.T, ctx context.Context, _ kubernetes.Interface) {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	manifest := filepath.Join(filepath.Dir(self), "..", "..", "manifests", "daemonset.yaml")
	if m := os.Getenv("VIGIL_E2E_MANIFEST"); m != "" {
		manifest = m
	}
	out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", cp.AdminKubeconfig, "apply", "-f", manifest).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply -f %s: %v\n%s", manifest, err, out)
	}
}

//go:build e2e

package e2e

import (
	"context"
	"os"
	"testing"
)

// ensureRBAC applies manifests/daemonset.yaml as shipped (ServiceAccount,
// ClusterRole, ClusterRoleBinding, DaemonSet): every agent in these tests runs
// as that ServiceAccount, so the tests prove the shipped ClusterRole is enough.
func ensureRBAC(t *testing.T, ctx context.Context) {
	t.Helper()
	manifest := "manifests/daemonset.yaml"
	if m := os.Getenv("VIGIL_E2E_MANIFEST"); m != "" {
		manifest = m
	}
	if err := cp.ApplyManifest(ctx, manifest); err != nil {
		t.Fatal(err)
	}
}

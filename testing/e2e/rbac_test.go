//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
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
	for _, m := range []string{manifest, "manifests/ippool-crd.yaml"} {
		if err := cp.ApplyManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", cp.AdminKubeconfig, "wait", "--for=condition=established", "--timeout=30s", "crd/ippools.vigil.io").CombinedOutput()
	if err != nil {
		t.Fatalf("IPPool CRD not established: %v\n%s", err, out)
	}
}

// The shipped ClusterRole is least privilege: the agent identity can do what
// vigil needs and nothing else.
func TestAgentRBACIsLeastPrivilege(t *testing.T) {
	c := newCluster(t, 1)
	kc, err := cp.Kubeconfig("agent-root-"+c.ns, agentUser, "system:serviceaccounts", "system:serviceaccounts:kube-system")
	if err != nil {
		t.Fatal(err)
	}
	can := func(args ...string) string {
		out, _ := exec.CommandContext(c.ctx, "kubectl", append([]string{"--kubeconfig", kc, "auth", "can-i"}, args...)...).Output() // stdout: the answer; warnings go to stderr
		return strings.TrimSpace(string(out))
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "services", "-A"}, "yes"},
		{[]string{"patch", "services", "-n", c.ns}, "yes"},
		{[]string{"update", "services", "--subresource=status", "-n", c.ns}, "yes"},
		{[]string{"list", "endpointslices.discovery.k8s.io", "-A"}, "yes"},
		{[]string{"watch", "nodes"}, "yes"},
		{[]string{"watch", "namespaces"}, "yes"},
		{[]string{"patch", "namespaces"}, "no"},
		{[]string{"patch", "nodes"}, "no"},
		{[]string{"update", "leases.coordination.k8s.io", "-n", c.ns}, "yes"},
		{[]string{"create", "events", "-n", c.ns}, "yes"},
		{[]string{"delete", "services", "-n", c.ns}, "no"},
		{[]string{"update", "services", "-n", c.ns}, "no"},
		{[]string{"get", "secrets", "-n", c.ns}, "no"},
		{[]string{"delete", "leases.coordination.k8s.io", "-n", c.ns}, "yes"},
		{[]string{"patch", "leases.coordination.k8s.io", "-n", c.ns}, "no"},
		{[]string{"create", "pods", "-n", c.ns}, "no"},
	} {
		if got := can(tt.args...); got != tt.want {
			t.Errorf("kubectl auth can-i %s = %q, want %q", strings.Join(tt.args, " "), got, tt.want)
		}
	}
}

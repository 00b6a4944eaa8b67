//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/testing/lab"
)

// imageRootEnv names the image root filesystems make image writes:
// $VIGIL_IMAGE_ROOTFS/linux-<arch>/rootfs.
const imageRootEnv = "VIGIL_IMAGE_ROOTFS"

// imageRootfs returns the image's root filesystem for arch, or skips (fails
// under VIGIL_E2E_REQUIRED=1) when make image has not run.
func imageRootfs(t *testing.T, arch string) string {
	t.Helper()
	dir := os.Getenv(imageRootEnv)
	if dir == "" {
		if os.Getenv("VIGIL_E2E_REQUIRED") == "1" {
			t.Fatalf("%s is not set (make test-e2e sets it after make image)", imageRootEnv)
		}
		t.Skipf("%s is not set: run make image, then %s=$PWD/bin/image", imageRootEnv, imageRootEnv)
	}
	root := filepath.Join(dir, "linux-"+arch, "rootfs")
	if _, err := os.Stat(filepath.Join(root, "usr", "local", "bin", "vigil")); err != nil {
		t.Fatalf("no vigil in the %s image: %v", arch, err)
	}
	return root
}

// The image's entrypoint runs from its own root filesystem, which holds
// nothing but the static binary: amd64 in a chroot, arm64 under
// qemu-aarch64-static (Debian's qemu-user-static).
func TestImageVersion(t *testing.T) {
	for arch, argv := range map[string]func(root string) []string{
		"amd64": func(root string) []string { return []string{"chroot", root, "/usr/local/bin/vigil", "version"} },
		"arm64": func(root string) []string {
			return []string{"qemu-aarch64-static", filepath.Join(root, "usr", "local", "bin", "vigil"), "version"}
		},
	} {
		t.Run(arch, func(t *testing.T) {
			cmd := argv(imageRootfs(t, arch))
			out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
			}
			if strings.TrimSpace(string(out)) == "" {
				t.Errorf("%s printed no version", strings.Join(cmd, " "))
			}
		})
	}
}

// vigil manager from the amd64 image's root filesystem (chrooted, its own
// /proc, as in a container) is one lab agent: it wins a Service's VIP and
// answers for it, serves the dashboard's L2 and election metrics, and hands
// the VIP to an agent of the host's build on SIGTERM.
func TestImageAgent(t *testing.T) {
	rootfs := imageRootfs(t, "amd64")
	c := newCluster(t, 2)
	root, err := lab.ImageRoot(c.ctx, rootfs, c.kubeconfig, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, err := c.n.StartAgent(c.node("node1"), lab.AgentOptions{
		Root: root, Binary: "/usr/local/bin/vigil", Kubeconfig: "/kubeconfig", Namespace: c.ns, Run: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.agents["node1"] = img
	c.waitReady("node1")
	ip := mustAddr("198.18.0.100")
	if holder := c.announced("web", ip); holder != "node1" {
		t.Fatalf("%s answers for %s, want node1 (the only agent, from the image)", holder, ip)
	}
	c.checkImageMetrics("node1")

	c.startAgent("node2")
	c.waitReady("node2")
	c.watchBound(ip.String())
	if err := img.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.waitOwner(ip, "node2", "", 10*time.Second)
}

// checkImageMetrics: the agent on node serves the dashboard metrics an L2
// agent holding a VIP has (BGP and allocator ones: pkg/metrics tests).
func (c *cluster) checkImageMetrics(node string) {
	c.t.Helper()
	code, body, err := c.n.HTTPGet(c.ctx, c.node(node), "http://127.0.0.1:2112/metrics")
	if err != nil || code != 200 {
		c.t.Fatalf("metrics: %d %v", code, err)
	}
	for _, want := range []string{
		"vigil_vips_announced 1", `vigil_service_announced{service="` + c.ns + `/web"} 1`, "vigil_announce_starts_total 1",
		`vigil_lease_writes_total{code="201",verb="create"}`, "vigil_reconcile_errors_total", "vigil_reconcile_duration_seconds_bucket",
		`vigil_announcements_sent_total{family="ipv4",result="ok"}`, "process_resident_memory_bytes",
	} {
		if !strings.Contains(body, want) {
			c.t.Errorf("%s metrics lack %s:\n%s", node, want, grepLines(body, "vigil_"))
		}
	}
}

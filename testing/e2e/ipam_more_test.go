//go:build e2e

package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// withoutIPPoolCRD deletes the IPPool CRD for this test and installs it
// again when the test ends (as the next test's newCluster would).
func (c *cluster) withoutIPPoolCRD() {
	c.t.Helper()
	if out, err := exec.CommandContext(c.ctx, "kubectl", "--kubeconfig", cp.AdminKubeconfig,
		"delete", "crd", "ippools.vigil.io", "--wait=true", "--ignore-not-found").CombinedOutput(); err != nil {
		c.t.Fatalf("delete IPPool CRD: %v\n%s", err, out)
	}
	c.t.Cleanup(c.installIPPoolCRD)
}

func (c *cluster) installIPPoolCRD() {
	c.t.Helper()
	if err := cp.ApplyManifest(c.ctx, "manifests/ippool-crd.yaml"); err != nil {
		c.t.Fatal(err)
	}
	if out, err := exec.CommandContext(c.ctx, "kubectl", "--kubeconfig", cp.AdminKubeconfig,
		"wait", "--for=condition=established", "--timeout=30s", "crd/ippools.vigil.io").CombinedOutput(); err != nil {
		c.t.Fatalf("IPPool CRD not established: %v\n%s", err, out)
	}
}

// kubeVIPConfigMap creates kube-vip-cloud-provider's ConfigMap for the test.
func (c *cluster) kubeVIPConfigMap(data map[string]string) {
	c.t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubevip", Namespace: "kube-system"}, Data: data}
	if _, err := c.cs.CoreV1().ConfigMaps("kube-system").Create(c.ctx, cm, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = c.cs.CoreV1().ConfigMaps("kube-system").Delete(c.ctx, "kubevip", metav1.DeleteOptions{}) })
}

// A kube-vip user: agents with svc_allocator=true, only the kubevip
// ConfigMap with range-global, no IPPool CRD. Services get addresses; the
// allocator says once, on its Lease, that there is no CRD; no agent logs
// a reflector error about IPPools. Installing the CRD later serves an
// IPPool. (Bug 5: no address, no Event, a reflector error every few seconds
// on every agent.)
func TestAllocatorWithoutIPPoolCRD(t *testing.T) {
	c := newCluster(t, 2)
	c.withoutIPPoolCRD()
	c.kubeVIPConfigMap(map[string]string{"range-global": "198.18.0.190-198.18.0.191"})
	c.startWithAllocator()

	c.setEndpoints("web", c.allNodes()...)
	c.createService("web", nil)
	ips := c.allocated("web", 10*time.Second)
	if len(ips) != 1 || !inRange(ips[0], "198.18.0.190", "198.18.0.191") {
		t.Fatalf("web got %v, want an address of range-global", ips)
	}
	c.waitOwner(ips[0], "", "", 5*time.Second)
	ev := c.waitEvent("vigil-allocator", "IPPoolCRDNotInstalled", 10*time.Second)
	t.Logf("Lease event: %s %s: %s", ev.Type, ev.Reason, ev.Message)

	// Watch the logs for a while: a reflector retrying a missing resource
	// logs every few seconds.
	select {
	case <-time.After(6 * time.Second):
	case <-c.ctx.Done():
		t.Fatal(c.ctx.Err())
	}
	var said int
	for name, p := range c.agents {
		for _, line := range strings.Split(p.Log(), "\n") {
			low := strings.ToLower(line)
			if strings.Contains(low, "ippool") && (strings.Contains(low, "failed to list") || strings.Contains(low, "failed to watch") || strings.Contains(low, "reflector")) {
				t.Errorf("%s logged a reflector error: %s", name, line)
			}
			if strings.Contains(line, "IPPool CRD is not installed") {
				said++
			}
		}
	}
	if said != len(c.agents) {
		t.Errorf("%d log lines say the CRD is missing, want one per agent (%d)", said, len(c.agents))
	}
	var n int32
	for _, e := range c.events("vigil-allocator") {
		if e.Reason == "IPPoolCRDNotInstalled" {
			n += max(e.Count, 1)
		}
	}
	if n != 1 {
		t.Errorf("%d IPPoolCRDNotInstalled events, want 1", n)
	}

	// The CRD installed later is picked up (discovery every 10 s).
	c.installIPPoolCRD()
	pool := "e2e-late-" + c.ns
	c.createPool(pool, []string{"198.18.0.195/32"}, false)
	c.setEndpoints("late", c.allNodes()...)
	c.createService("late", nil, withAnnotation("vigil.io/ip-pool", pool))
	if ips := c.allocated("late", 30*time.Second); len(ips) != 1 || ips[0] != mustAddr("198.18.0.195") {
		t.Errorf("late got %v, want 198.18.0.195 from the IPPool created after the CRD", ips)
	}
}

// Bug 6: the pool is exhausted, a Service waits with a Warning Event;
// deleting another Service gives the waiting one the freed address at once.
// With a ConfigMap pool nothing else wakes the waiting Service (with an
// IPPool, the pool's status write used to, by accident).
func TestAllocatorFreedAddressGoesToWaitingService(t *testing.T) {
	// Distinct addresses outside the lab DHCP range (198.18.0.200-250): the
	// lab's earlier Services stay, and hold theirs (a DHCP test's Service
	// holding 198.18.0.201 made this flake).
	for _, tc := range []struct{ source, addr string }{{"ConfigMap", "198.18.3.200"}, {"IPPool", "198.18.3.201"}} {
		t.Run(tc.source, func(t *testing.T) {
			c := newCluster(t, 2)
			if tc.source == "ConfigMap" {
				c.kubeVIPConfigMap(map[string]string{"range-" + c.ns: tc.addr + "-" + tc.addr})
			} else {
				c.createPool("e2e-"+c.ns, []string{tc.addr + "/32"}, true)
			}
			c.startWithAllocator()
			c.freedAddressGoesToWaiting()
		})
	}
}

func (c *cluster) freedAddressGoesToWaiting() {
	c.t.Helper()
	c.setEndpoints("a", c.allNodes()...)
	c.createService("a", nil)
	freed := c.allocated("a", 10*time.Second)
	c.setEndpoints("b", c.allNodes()...)
	c.createService("b", nil)
	ev := c.waitEvent("b", "AllocationFailed", 10*time.Second)
	c.t.Logf("b waits: %s", ev.Message)

	start := time.Now()
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "a", metav1.DeleteOptions{}); err != nil {
		c.t.Fatal(err)
	}
	ips := c.allocated("b", 2*time.Second)
	c.t.Logf("b got %v %v after a was deleted", ips, time.Since(start).Round(time.Millisecond))
	if len(ips) != 1 || ips[0] != freed[0] {
		c.t.Errorf("b got %v, want a's freed %v", ips, freed)
	}
}

//go:build e2e

package e2e

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/nodestatus"
	"github.com/vigil-lb/vigil/testing/lab"
)

const bgpRouterV4, bgpRouterV6 = "198.18.0.254", "fd00:1ab::fe"

// metricValue is the value of the sample named exactly series in a text
// exposition (-1 when absent or not a number).
func metricValue(body, series string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// Truth and operations: once a Service is advertised, every node's
// /metrics shows its sessions up and 1+ prefix sent to the router, each
// node's Lease records its sessions, and `vigil status` lists the three
// nodes' peers as established. The Leases are not rewritten while nothing
// changes.
func TestBGPStatus(t *testing.T) {
	c, r := bgpCluster(t, 3, "svc_election=false")
	vip := mustAddr("198.18.0.158")
	c.setEndpoints("web", c.allNodes()...)
	c.createService("web", []string{vip.String()})
	c.waitHops(r, vip, 15*time.Second, c.allNodes()...)

	for _, n := range c.allNodes() {
		c.waitBGPMetrics(n)
	}
	out := c.waitStatusPeers()
	t.Logf("vigil status:\n%s", out)
	c.leasesUnchanged(12 * time.Second)
}

// waitBGPMetrics waits (a report every 10 s at the latest) for node's
// sessions to both routers' addresses to show up, and 1+ prefix sent to
// the IPv4 one.
func (c *cluster) waitBGPMetrics(node string) {
	c.t.Helper()
	var body string
	err := lab.WaitFor(c.ctx, 15*time.Second, func() bool {
		code, b, err := c.n.HTTPGet(c.ctx, c.node(node), "http://127.0.0.1:2112/metrics")
		if err != nil || code != 200 {
			return false
		}
		body = b
		return metricValue(b, `vigil_bgp_session_up{peer="`+bgpRouterV4+`"}`) == 1 &&
			metricValue(b, `vigil_bgp_session_up{peer="`+bgpRouterV6+`"}`) == 1 &&
			metricValue(b, `vigil_bgp_session_state{peer="`+bgpRouterV4+`",state="established"}`) == 1 &&
			metricValue(b, `vigil_bgp_prefixes_advertised{peer="`+bgpRouterV4+`"}`) >= 1
	})
	if err != nil {
		c.t.Fatalf("%s: BGP metrics never showed both sessions up and a prefix sent:\n%s", node, grepLines(body, "vigil_bgp_"))
	}
	c.t.Logf("%s metrics:\n%s", node, grepLines(body, "vigil_bgp_session_up")+"\n"+grepLines(body, "vigil_bgp_prefixes"))
}

// waitStatusPeers waits until `vigil status` lists every node's session
// to the IPv4 router as established with 1+ prefix and returns its output.
func (c *cluster) waitStatusPeers() string {
	c.t.Helper()
	var out []byte
	err := lab.WaitFor(c.ctx, 15*time.Second, func() bool {
		var err error
		out, err = exec.CommandContext(c.ctx, vigilBin(c.t), "status", "--kubeconfig", cp.AdminKubeconfig,
			"-n", c.ns, "--lease-namespace", c.ns).CombinedOutput()
		if err != nil {
			return false
		}
		for _, n := range c.allNodes() {
			if !hasPeerLine(string(out), n, bgpRouterV4) || !hasPeerLine(string(out), n, bgpRouterV6) {
				return false
			}
		}
		return strings.Contains(string(out), "NODE") && strings.Contains(string(out), "198.18.0.158")
	})
	if err != nil {
		c.t.Fatalf("vigil status never listed 3 nodes' peers as established:\n%s", out)
	}
	return string(out)
}

// hasPeerLine reports whether status shows node's session to peer as
// established with the router (AS 65001), with 1+ prefix for the IPv4
// router.
func hasPeerLine(out, node, peer string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[0] != node || f[1] != peer || f[2] != "65001" || f[3] != "established" {
			continue
		}
		n, err := strconv.Atoi(f[5])
		return err == nil && (peer != bgpRouterV4 || n >= 1)
	}
	return false
}

// leasesUnchanged checks that every node's Lease has its sessions and
// vigil's label, and keeps its resourceVersion for d (past a 10 s report).
func (c *cluster) leasesUnchanged(d time.Duration) {
	c.t.Helper()
	rv := map[string]string{}
	for _, n := range c.allNodes() {
		l, err := c.cs.CoordinationV1().Leases(c.ns).Get(c.ctx, nodestatus.LeaseName(n), metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		if l.Labels[nodestatus.ManagedByLabel] != nodestatus.ManagedByValue || l.Spec.HolderIdentity != nil {
			c.t.Errorf("%s: labels %v, holder %v; want managed-by=vigil and no holder", l.Name, l.Labels, l.Spec.HolderIdentity)
		}
		c.t.Logf("%s %s=%s", l.Name, nodestatus.PeersAnnotation, l.Annotations[nodestatus.PeersAnnotation])
		rv[n] = l.ResourceVersion
	}
	select {
	case <-time.After(d):
	case <-c.ctx.Done():
		c.t.Fatal(c.ctx.Err())
	}
	for _, n := range c.allNodes() {
		l, err := c.cs.CoordinationV1().Leases(c.ns).Get(c.ctx, nodestatus.LeaseName(n), metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		if l.ResourceVersion != rv[n] {
			c.t.Errorf("%s rewritten (resourceVersion %s -> %s) while nothing changed", l.Name, rv[n], l.ResourceVersion)
		}
	}
}

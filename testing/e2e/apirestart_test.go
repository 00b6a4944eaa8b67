//go:build e2e

package e2e

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/testing/lab"
)

// API server restarts and stops one after another, without LAN liveness
// (the default): holders step down when their renewals fail, and once the
// API server is ready again every Service, Cluster and Local policy, is
// announced again within LeaseDuration + 1 s, the fault campaign's grace.
// A holder leads only once its Lease cache shows its write; the fault
// campaign found Services announced 9-10 s after a restart, and this
// sequence of five outages within two minutes 24 s after the last one:
// a shared informer's reflector kept its backoff (doubling up to 30 s) from
// one outage to the next. The Lease cache now retries every RetryPeriod.
func TestAPIServerRestartReannounces(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll()
	nodes := c.allNodes()
	vips := map[string]netip.Addr{}
	for i, s := range []struct {
		name  string
		local bool
		on    []string
	}{
		{"cluster-1", false, nodes},
		{"cluster-2", false, nodes},
		{"local-1", true, nodes[:1]},
		{"local-2", true, nodes[1:2]},
		{"local-3", true, nodes[1:]},
	} {
		ip := netip.AddrFrom4([4]byte{198, 18, 0, byte(20 + i)})
		vips[s.name] = ip
		c.setEndpoints(s.name, s.on...)
		opts := []svcOpt{}
		if s.local {
			opts = append(opts, withLocal())
		}
		c.createService(s.name, []string{ip.String()}, opts...)
	}
	for _, ip := range vips {
		c.waitOwner(ip, "", "", 10*time.Second)
	}
	grace := 5*time.Second + time.Second // vip_leaseduration's default + 1 s
	for _, outage := range []time.Duration{0, 10 * time.Second, 0, 3 * time.Second, 0} {
		start := time.Now()
		cp.StopAPIServer()
		time.Sleep(outage)
		if err := cp.StartAPIServer(c.ctx); err != nil {
			t.Fatal(err)
		}
		ready := time.Now()
		for name, ip := range vips {
			err := lab.WaitFor(c.ctx, 30*time.Second, func() bool { return c.owner(ip) != "" })
			took := time.Since(ready)
			switch {
			case err != nil:
				t.Errorf("outage %v: %s (%s) not announced 30 s after the API server was ready", outage, name, ip)
			case took > grace:
				t.Errorf("outage %v: %s (%s) announced again %v after the API server was ready (down for %v), want within %v",
					outage, name, ip, took.Round(time.Millisecond), ready.Sub(start).Round(time.Millisecond), grace)
			default:
				t.Logf("outage %v: %s (%s) answered %v after the API server was ready (down for %v)",
					outage, name, ip, took.Round(time.Millisecond), ready.Sub(start).Round(time.Millisecond))
			}
		}
	}
}

// A restarted agent takes back the Lease its killed predecessor held two
// retry periods after it sees it, not a whole lease later: a Local
// Service whose one endpoint is on that node has no other candidate, and
// was dark 5 s past the restart (the fault campaign found it).
func TestRestartedAgentTakesBackItsService(t *testing.T) {
	c := newCluster(t, 2)
	c.startAll()
	vip := mustAddr("198.18.0.26")
	c.setEndpoints("web", "node1")
	c.createService("web", []string{vip.String()}, withLocal())
	c.waitOwner(vip, "node1", "", 10*time.Second)
	c.agents["node1"].Kill()
	c.startAgent("node1")
	c.waitReady("node1")
	_, took := c.waitOwner(vip, "node1", "", 15*time.Second)
	// Two retry periods (1 s each) from the first sighting, at most a
	// moment after ready; the whole lease would be 5 s.
	if took > 3500*time.Millisecond {
		t.Errorf("node1 announced its Local Service again %v after its restarted agent was ready, want about 2 s (two retry periods)", took.Round(time.Millisecond))
	} else {
		t.Logf("node1 announced its Local Service again %v after its restarted agent was ready", took.Round(time.Millisecond))
	}
}

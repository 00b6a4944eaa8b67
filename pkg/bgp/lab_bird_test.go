package bgp_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/pkg/bgp"
)

// startBIRD runs BIRD 2 in the router namespace: dynamic neighbours for
// the whole LAN (IPv4 and IPv6), routes exported to the kernel, every
// state change and route traced to bird.log with milliseconds.
func (l *bgpLab) startBIRD(t *testing.T) (ctl string) {
	t.Helper()
	ctl = filepath.Join(l.dir, "bird.ctl")
	conf := l.write(t, "bird.conf", strings.NewReplacer("DIR", l.dir).Replace(`
log "DIR/bird.log" all;
timeformat log "%T.%3f";
router id 198.18.0.254;
protocol device { }
protocol kernel { ipv4 { export all; import none; }; merge paths on; }
protocol kernel { ipv6 { export all; import none; }; merge paths on; }
template bgp nodes {
	hold time 9;
	error wait time 1,5;
	debug { states, routes, events };
}
protocol bgp lan4 from nodes {
	local 198.18.0.254 as 65001;
	neighbor range 198.18.0.0/24 as 65000;
	dynamic name "node";
	ipv4 { import all; export none; };
}
protocol bgp lan6 from nodes {
	local fd00:1ab::fe as 65001;
	neighbor range fd00:1ab::/64 as 65000;
	dynamic name "nodesix";
	ipv6 { import all; export none; };
}
`))
	l.startDaemon(t, "bird", "bird", "-f", "-c", conf, "-s", ctl, "-P", filepath.Join(l.dir, "bird.pid"))
	waitFor(t, 5*time.Second, "BIRD's control socket", func() bool { _, err := os.Stat(ctl); return err == nil })
	return ctl
}

// TestBIRD: sessions from the Speaker to BIRD 2 over IPv4 and IPv6; a /32
// with a community and a /128 reach the router's kernel FIB via the node;
// Withdraw removes one; SIGTERM withdraws the rest before the Cease that
// closes the sessions.
func TestBIRD(t *testing.T) {
	requireLab(t, "bird", "birdc")
	l := newBGPLab(t)
	ctl := l.startBIRD(t)
	n := startNode(t, l.node, nodeConfig())
	start := time.Now()
	n.setPeers(t,
		bgp.Peer{Address: routerV4, ASN: routerASN, HoldTime: 9 * time.Second, ConnectTime: 2 * time.Second},
		bgp.Peer{Address: routerV6, ASN: routerASN, HoldTime: 9 * time.Second, ConnectTime: 2 * time.Second})
	waitFor(t, 15*time.Second, "both sessions established", func() bool {
		ps := n.peers(t)
		return stateOf(ps, routerV4).State == "established" && stateOf(ps, routerV6).State == "established"
	})
	t.Logf("measured: SetPeers -> both sessions established: %v (GoBGP's first connect waits 1.5-2 s)", time.Since(start).Round(time.Millisecond))
	if out := l.exec(t, "birdc", "-s", ctl, "show", "protocols"); strings.Count(out, "Established") != 2 {
		t.Errorf("BIRD does not show two established sessions:\n%s", out)
	}

	start = time.Now()
	n.announce(t, bgp.Route{Prefix: labVIP4, Communities: []uint32{65000<<16 | 100}})
	l.waitFIB(t, labVIP4, nodeV4, 5*time.Second)
	t.Logf("measured: Announce /32 -> router FIB via the node: %v", time.Since(start).Round(100*time.Microsecond))
	start = time.Now()
	n.announce(t, bgp.Route{Prefix: labVIP6, LargeCommunities: []bgp.LargeCommunity{{Global: 4200000000, Local1: 1, Local2: 2}}})
	l.waitFIB(t, labVIP6, nodeV6, 5*time.Second)
	t.Logf("measured: Announce /128 -> router FIB via the node: %v", time.Since(start).Round(100*time.Microsecond))
	if out := l.exec(t, "birdc", "-s", ctl, "show", "route", "all", labVIP4.String()); !strings.Contains(out, "(65000,100)") {
		t.Errorf("community 65000:100 not on BIRD's route:\n%s", out)
	}
	if out := l.exec(t, "birdc", "-s", ctl, "show", "route", "all", labVIP6.String()); !strings.Contains(out, "(4200000000, 1, 2)") {
		t.Errorf("large community 4200000000:1:2 not on BIRD's route:\n%s", out)
	}
	n.announce(t, bgp.Route{Prefix: labVIP4, Communities: []uint32{65000<<16 | 100}}) // again: nothing changes
	if ps := stateOf(n.peers(t), routerV4); ps.PrefixesSent != 1 {
		t.Errorf("IPv4 session: %d prefixes sent, want 1", ps.PrefixesSent)
	}

	start = time.Now()
	n.withdraw(t, labVIP6)
	l.waitFIB(t, labVIP6, netip0, 5*time.Second)
	t.Logf("measured: Withdraw /128 -> gone from router FIB: %v", time.Since(start).Round(100*time.Microsecond))

	start = time.Now()
	n.term(t)
	l.waitFIB(t, labVIP4, netip0, 5*time.Second)
	t.Logf("measured: SIGTERM -> /32 gone from router FIB: %v", time.Since(start).Round(100*time.Microsecond))
	if err := n.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("measured: SIGTERM -> speaker exited: %v", time.Since(start).Round(time.Millisecond))
	checkWithdrawnBeforeCease(t, filepath.Join(l.dir, "bird.log"), labVIP4.String())
}

// checkWithdrawnBeforeCease reads BIRD's trace: the route's removal must
// come before the session's end, and the session must end by a received
// Cease (peer de-configured), not by the hold timer.
func checkWithdrawnBeforeCease(t *testing.T, logPath, prefix string) {
	t.Helper()
	var trace []string
	waitFor(t, 5*time.Second, "the session's end in BIRD's log", func() bool {
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		trace = strings.Split(string(b), "\n")
		return index(trace, "node1", "Received:") >= 0
	})
	removed, closed := index(trace, "node1", "removed", prefix), index(trace, "node1", "Received:")
	t.Logf("BIRD: %q then %q", line(trace, removed), line(trace, closed))
	if removed < 0 || removed > closed {
		t.Errorf("BIRD did not see %s withdrawn before the session closed:\n%s", prefix, strings.Join(trace, "\n"))
	}
	if !strings.Contains(line(trace, closed), "de-configured") || index(trace, "node1", "Hold timer expired") >= 0 {
		t.Errorf("session not closed by a Cease (peer de-configured): %q", line(trace, closed))
	}
}

// index is the first line of trace holding every word, or -1.
func index(trace []string, words ...string) int {
	for i, l := range trace {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			return i
		}
	}
	return -1
}

func line(trace []string, i int) string {
	if i < 0 {
		return ""
	}
	return trace[i]
}

// TestBIRDRouterID: a new router id restarts the speaker: BIRD sees the
// session come back from the new id, and the route with it.
func TestBIRDRouterID(t *testing.T) {
	requireLab(t, "bird", "birdc")
	l := newBGPLab(t)
	ctl := l.startBIRD(t)
	n := startNode(t, l.node, nodeConfig())
	n.setPeers(t, bgp.Peer{Address: routerV4, ASN: routerASN, HoldTime: 9 * time.Second, ConnectTime: 2 * time.Second})
	n.announce(t, bgp.Route{Prefix: labVIP4})
	l.waitFIB(t, labVIP4, nodeV4, 15*time.Second)
	id := netip.MustParseAddr("198.18.0.99")
	n.call(t, request{Op: "routerid", ID: id})
	waitFor(t, 20*time.Second, "BIRD's session from the new router id", func() bool {
		out := l.exec(t, "birdc", "-s", ctl, "show", "protocols", "all")
		return strings.Contains(out, "Established") && strings.Contains(out, "Neighbor ID:      "+id.String())
	})
	l.waitFIB(t, labVIP4, nodeV4, 10*time.Second)
}

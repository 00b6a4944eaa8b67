package bgp_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/pkg/bgp"
)

const md5Password = "vigil-md5-secret"

// startFRR runs FRR's zebra, bfdd and bgpd by hand in the router
// namespace: one eBGP neighbour (the node) with a TCP-MD5 password and a
// BFD profile of 100 ms x 3.
func (l *bgpLab) startFRR(t *testing.T) {
	t.Helper()
	r := strings.NewReplacer("DIR", l.dir, "NODE", nodeV4.String(), "PASSWORD", md5Password)
	common := func(name string) []string {
		return []string{"/usr/lib/frr/" + name, "-f", l.write(t, name+".conf", r.Replace(frrConf[name])),
			"-i", filepath.Join(l.dir, name+".pid"), "-z", filepath.Join(l.dir, "zserv.api"),
			"--vty_socket", l.dir, "-u", "frr", "-g", "frr", "-P", "0"}
	}
	l.startDaemon(t, "zebra", common("zebra")...)
	waitFor(t, 5*time.Second, "zebra's socket", func() bool { return l.vtyOK("zebra.vty") })
	l.startDaemon(t, "bfdd", append(common("bfdd"), "--bfdctl", filepath.Join(l.dir, "bfdd.sock"))...)
	l.startDaemon(t, "bgpd", common("bgpd")...)
	waitFor(t, 5*time.Second, "bgpd and bfdd", func() bool { return l.vtyOK("bgpd.vty") && l.vtyOK("bfdd.vty") })
}

var frrConf = map[string]string{
	"zebra": "hostname router\nlog file DIR/zebra.log\n",
	"bfdd": `hostname router
log file DIR/bfdd.log
bfd
 profile fast
  detect-multiplier 3
  receive-interval 100
  transmit-interval 100
 !
!
`,
	"bgpd": `hostname router
log file DIR/bgpd.log
router bgp 65001
 bgp router-id 198.18.0.254
 no bgp ebgp-requires-policy
 neighbor NODE remote-as 65000
 neighbor NODE password PASSWORD
 neighbor NODE timers 3 9
 neighbor NODE bfd
 neighbor NODE bfd profile fast
!
`,
}

func (l *bgpLab) vtyOK(sock string) bool {
	_, err := statFile(filepath.Join(l.dir, sock))
	return err == nil
}

// vtysh runs a show command and decodes its JSON.
func (l *bgpLab) vtysh(t *testing.T, cmd string, v any) {
	t.Helper()
	out := l.exec(t, "vtysh", "--vty_socket", l.dir, "-c", cmd)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("vtysh %q: %v: %s", cmd, err, out)
	}
}

// TestFRRBFDPassword: a session to FRR with TCP-MD5 and BFD 100 ms x 3;
// the /32 reaches zebra's FIB; when the node's cable is pulled, FRR's BFD
// drops the session (not the 9 s hold timer) and the route leaves the FIB.
func TestFRRBFDPassword(t *testing.T) {
	requireLab(t, "vtysh", "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/lib/frr/bfdd")
	l := newBGPLab(t)
	l.startFRR(t)
	n := startNode(t, l.node, nodeConfig())
	start := time.Now()
	n.setPeers(t, bgp.Peer{Address: routerV4, ASN: routerASN, Password: md5Password, HoldTime: 9 * time.Second, ConnectTime: 2 * time.Second,
		BFD: &bgp.BFD{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 3}})
	waitFor(t, 15*time.Second, "the session established", func() bool { return stateOf(n.peers(t), routerV4).State == "established" })
	up := time.Now()
	t.Logf("measured: SetPeers -> session established (TCP-MD5): %v", up.Sub(start).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "FRR's BFD session up", func() bool {
		var peers []struct{ Peer, Status string }
		l.vtysh(t, "show bfd peers json", &peers)
		return len(peers) == 1 && peers[0].Peer == nodeV4.String() && peers[0].Status == "up"
	})
	t.Logf("measured: SetPeers -> FRR's BFD up: %v", time.Since(start).Round(time.Millisecond))
	// GoBGP's BFD, had it been armed before the session came up, would
	// expire 3 s after it and reset the session: watch that long.
	time.Sleep(time.Until(up.Add(4 * time.Second)))
	if ps := stateOf(n.peers(t), routerV4); ps.State != "established" || ps.LastError != "" || ps.Since.After(up) {
		t.Errorf("the session flapped after BFD came up: %+v", ps)
	}

	start = time.Now()
	n.announce(t, bgp.Route{Prefix: labVIP4})
	l.waitFIB(t, labVIP4, nodeV4, 5*time.Second)
	t.Logf("measured: Announce /32 -> FRR's FIB via the node: %v", time.Since(start).Round(100*time.Microsecond))

	netnsIP(t, l.node, "link", "set", "eth0", "down") // the cable: nothing leaves the node any more
	start = time.Now()
	l.waitFIB(t, labVIP4, netip0, 5*time.Second)
	took := time.Since(start)
	t.Logf("measured: cable pulled -> route gone from FRR's FIB: %v (BFD 100 ms x 3; hold time 9 s)", took.Round(time.Millisecond))
	var nb map[string]struct {
		LastNotificationReason string `json:"lastNotificationReason"`
	}
	l.vtysh(t, "show bgp neighbors "+nodeV4.String()+" json", &nb)
	if why := nb[nodeV4.String()].LastNotificationReason; !strings.Contains(why, "BFD") {
		t.Errorf("FRR closed the session with %q, want Cease/BFD Down (it took %v)", why, took)
	}
}

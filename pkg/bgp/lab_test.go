package bgp_test

// Kernel tests against real routers: BIRD 2 and FRR run in a throwaway
// "router" namespace, the Speaker in a helper process in a "node"
// namespace, both plugged into a bridge in a "lan" namespace (so pulling
// the node's cable leaves the router's link up, as on a switch). Only
// 198.18.0.0/24 and fd00:1ab::/64 are used, never the root namespace.
// They need root, iproute2, bird2 and frr (testing/install-deps.sh), skip
// without them, and fail instead with VIGIL_E2E_REQUIRED=1.

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/bgp"
)

var (
	nodeV4   = netip.MustParseAddr("198.18.0.11")
	nodeV6   = netip.MustParseAddr("fd00:1ab::11")
	routerV4 = netip.MustParseAddr("198.18.0.254")
	routerV6 = netip.MustParseAddr("fd00:1ab::fe")
	labVIP4  = netip.MustParsePrefix("198.18.0.100/32")
	labVIP6  = netip.MustParsePrefix("fd00:1ab::100/128")
)

const (
	nodeASN   = 65000
	routerASN = 65001
)

// requireLab skips (or fails, with VIGIL_E2E_REQUIRED=1) without root or
// the tools named.
func requireLab(t *testing.T, tools ...string) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "BGP lab tests need root (network namespaces)"
	}
	var missing []string
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if why == "" && len(missing) > 0 {
		why = "BGP lab tools missing: " + strings.Join(missing, " ") + " (testing/install-deps.sh installs bird2 and frr)"
	}
	if why == "" {
		return
	}
	if os.Getenv("VIGIL_E2E_REQUIRED") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// bgpLab is node ↔ lan bridge ↔ router.
type bgpLab struct {
	node, router string // namespaces
	dir          string
	rh           *netlink.Handle // netlink in the router's namespace
}

func newBGPLab(t *testing.T) *bgpLab {
	t.Helper()
	l := &bgpLab{node: netnstest.New(t), router: netnstest.New(t), dir: frrDir(t)}
	lan := netnstest.New(t)
	netnstest.IP(t, lan, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
	netnstest.IP(t, lan, "link", "set", "br0", "up")
	for _, h := range []struct {
		ns, port string
		v4, v6   netip.Addr
	}{{l.node, "p-node", nodeV4, nodeV6}, {l.router, "p-router", routerV4, routerV6}} {
		netnstest.IP(t, lan, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		netnstest.IP(t, lan, "link", "set", h.port, "master", "br0", "up")
		netnstest.IP(t, h.ns, "link", "set", "lo", "up")
		netnstest.IP(t, h.ns, "addr", "add", h.v4.String()+"/24", "dev", "eth0")
		netnstest.IP(t, h.ns, "addr", "add", h.v6.String()+"/64", "dev", "eth0", "nodad")
		netnstest.IP(t, h.ns, "link", "set", "eth0", "up")
	}
	l.rh = netnstest.HandleAt(t, l.router)
	return l
}

// frrDir is a run directory the frr user can write to.
func frrDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vigil-bgp-lab-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startDaemon runs argv in the router's namespace until the test ends.
func (l *bgpLab) startDaemon(t *testing.T, name string, argv ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(l.dir, name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.router}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			for _, f := range []string{name + ".out", name + ".log"} {
				if b, err := os.ReadFile(filepath.Join(l.dir, f)); err == nil {
					t.Logf("---- %s ----\n%s", f, b)
				}
			}
		}
	})
}

func (l *bgpLab) write(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// routeVia reports the router's kernel route to p: its next hops, or nil.
func (l *bgpLab) routeVia(t *testing.T, p netip.Prefix) []netip.Addr {
	t.Helper()
	fam := netlink.FAMILY_V4
	if !p.Addr().Is4() {
		fam = netlink.FAMILY_V6
	}
	dst := &netlink.Route{Dst: prefixNet(p)}
	rs, err := l.rh.RouteListFiltered(fam, dst, netlink.RT_FILTER_DST)
	if err != nil {
		t.Fatalf("route list: %v", err)
	}
	var via []netip.Addr
	for _, r := range rs {
		if r.Dst == nil || r.Dst.String() != p.String() {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			via = append(via, a.Unmap())
		}
		for _, nh := range r.MultiPath {
			if a, ok := netip.AddrFromSlice(nh.Gw); ok {
				via = append(via, a.Unmap())
			}
		}
		if len(via) == 0 {
			via = append(via, netip.Addr{}) // a route without gateway
		}
	}
	return via
}

// waitFIB polls the router's FIB every millisecond until the route to p is
// via want (or absent, for a zero want); it returns how long that took.
func (l *bgpLab) waitFIB(t *testing.T, p netip.Prefix, want netip.Addr, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		via := l.routeVia(t, p)
		if !want.IsValid() && len(via) == 0 || want.IsValid() && len(via) == 1 && via[0] == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			out, _ := exec.Command("ip", "-n", l.router, "route", "show", "table", "all").CombinedOutput()
			t.Fatalf("router FIB: route to %s via %v after %v, want via %v\n%s", p, via, timeout, want, out)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitFor polls cond every 5ms until it holds, or fails the test.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func (l *bgpLab) exec(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", l.router}, argv...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

var netip0 netip.Addr

func nodeConfig() helperConfig {
	return helperConfig{ASN: nodeASN, RouterID: nodeV4}
}

func stateOf(ps []bgp.PeerState, a netip.Addr) bgp.PeerState {
	for _, p := range ps {
		if p.Address == a {
			return p
		}
	}
	return bgp.PeerState{}
}

func statFile(p string) (os.FileInfo, error) { return os.Stat(p) }

func netnsIP(t *testing.T, ns string, args ...string) { t.Helper(); netnstest.IP(t, ns, args...) }

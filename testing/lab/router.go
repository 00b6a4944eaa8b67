package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Router is a BGP router on the lab LAN (BIRD 2 in its own namespace,
// 198.18.0.254 / fd00:1ab::fe, AS 65001) with a far client behind it
// (198.19.1.2, reachable only through the router): routes it learns from
// the nodes go into its kernel FIB, several equal ones merged into one ECMP
// route.
type Router struct {
	Host *Host // the router on the LAN
	Far  *Host // the far client behind it
	ASN  uint32
	ctl  string // birdc control socket
}

// Router addressing.
var (
	RouterIPv4 = netip.MustParseAddr("198.18.0.254")
	RouterIPv6 = netip.MustParseAddr("fd00:1ab::fe")
	FarIPv4    = netip.MustParseAddr("198.19.1.2")
	farNet     = "198.19.1.0/24"
)

// RouterOptions shapes the router's sessions with the nodes.
type RouterOptions struct {
	NodeASN  uint32        // default 65000 (bgp_as's default)
	HoldTime time.Duration // default 9s
	// BFD: run BIRD's BFD on the LAN (100 ms x 3) for the node sessions.
	BFD bool
}

// StartRouter adds the router and the far client to the lab and starts
// BIRD. The nodes get a route to the far client's subnet via the router.
func (n *Network) StartRouter(ctx context.Context, o RouterOptions) (*Router, error) {
	if o.NodeASN == 0 {
		o.NodeASN = 65000
	}
	if o.HoldTime == 0 {
		o.HoldTime = 9 * time.Second
	}
	r := &Router{ASN: 65001,
		Host: &Host{Name: "router", NS: nsPrefix + n.ID + "-rtr", MAC: mac(0, 0xfe), IPv4: RouterIPv4, IPv6: RouterIPv6},
		Far:  &Host{Name: "far", NS: nsPrefix + n.ID + "-far", MAC: mac(2, 2), IPv4: FarIPv4},
	}
	if err := n.attach(ctx, r.Host); err != nil {
		return nil, fmt.Errorf("attach router: %w", err)
	}
	if err := n.addFar(ctx, r); err != nil {
		return nil, err
	}
	for _, h := range n.Nodes {
		if err := ipBatch(ctx, h.NS, "route add "+farNet+" via "+RouterIPv4.String()); err != nil {
			return nil, err
		}
	}
	if err := n.startBIRD(ctx, r, o); err != nil {
		return nil, err
	}
	return r, nil
}

// addFar links the router's eth1 to the far client and turns on ECMP
// forwarding that spreads connections.
func (n *Network) addFar(ctx context.Context, r *Router) error {
	if err := n.addNamespace(ctx, r.Far.NS); err != nil {
		return err
	}
	if err := ipBatch(ctx, r.Host.NS,
		"link add eth1 type veth peer name eth0 netns "+r.Far.NS,
		"addr add 198.19.1.1/24 dev eth1",
		"link set eth1 up",
	); err != nil {
		return err
	}
	if err := writeSysctls(r.Host.NS, map[string]string{
		"net/ipv4/ip_forward": "1", "net/ipv4/fib_multipath_hash_policy": "1",
	}); err != nil {
		return err
	}
	return ipBatch(ctx, r.Far.NS,
		"link set lo up",
		"link set eth0 address "+r.Far.MAC.String(),
		"addr add "+r.Far.IPv4.String()+"/24 dev eth0",
		"link set eth0 up",
		"route add default via 198.19.1.1",
	)
}

func (n *Network) startBIRD(ctx context.Context, r *Router, o RouterOptions) error {
	dir := filepath.Join(n.Dir, "bird")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r.ctl = filepath.Join(dir, "bird.ctl")
	conf := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(birdConfig(dir, o)), 0o644); err != nil {
		return err
	}
	if _, err := n.Start(r.Host, "bird", nil, "bird", "-f", "-c", conf, "-s", r.ctl, "-P", filepath.Join(dir, "bird.pid")); err != nil {
		return fmt.Errorf("start bird: %w", err)
	}
	return WaitFor(ctx, 5*time.Second, func() bool { _, err := os.Stat(r.ctl); return err == nil })
}

func birdConfig(dir string, o RouterOptions) string {
	bfd, bfdOn := "", ""
	if o.BFD {
		bfd = `protocol bfd { interface "*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }`
		bfdOn = "bfd on;"
	}
	return strings.NewReplacer("DIR", dir, "NODEAS", fmt.Sprint(o.NodeASN), "HOLD", fmt.Sprint(int(o.HoldTime.Seconds())),
		"BFDPROTO", bfd, "BFDON", bfdOn).Replace(`
log "DIR/bird.log" all;
timeformat log "%T.%3f";
router id 198.18.0.254;
protocol device { }
protocol kernel { ipv4 { export all; import none; }; merge paths on; }
protocol kernel { ipv6 { export all; import none; }; merge paths on; }
BFDPROTO
template bgp nodes {
	direct;
	hold time HOLD;
	error wait time 1,5;
	BFDON
}
protocol bgp lan4 from nodes {
	local 198.18.0.254 as 65001;
	neighbor range 198.18.0.0/24 as NODEAS;
	dynamic name "node";
	ipv4 { import all; export none; };
}
protocol bgp lan6 from nodes {
	local fd00:1ab::fe as 65001;
	neighbor range fd00:1ab::/64 as NODEAS;
	dynamic name "nodesix";
	ipv6 { import all; export none; };
}
`)
}

// NextHops lists the next hops of the router's FIB route for p (none: no
// route). An ECMP route lists one per node.
func (r *Router) NextHops(ctx context.Context, p netip.Prefix) ([]netip.Addr, error) {
	fam := "-4"
	if p.Addr().Is6() {
		fam = "-6"
	}
	out, err := runIn(ctx, r.Host.NS, "ip", fam, "route", "show", "exact", p.String())
	if err != nil {
		return nil, err
	}
	var hops []netip.Addr
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" {
			if a, err := netip.ParseAddr(f[i+1]); err == nil {
				hops = append(hops, a)
			}
		}
	}
	return hops, nil
}

// Birdc runs a birdc command on the router (e.g. "show route all").
func (r *Router) Birdc(ctx context.Context, args ...string) (string, error) {
	return runIn(ctx, r.Host.NS, append([]string{"birdc", "-s", r.ctl}, args...)...)
}

// DialFromFar connects from the far client (through the router) to
// addr:port and returns the server's greeting (the host name).
func (r *Router) DialFromFar(ctx context.Context, addr netip.Addr, port uint16) (string, error) {
	return dialFrom(ctx, r.Far.NS, netip.AddrPortFrom(addr, port))
}

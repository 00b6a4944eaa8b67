package upnp_test

// Kernel tests against a real miniupnpd (secure mode) on the lab's gateway
// namespace. They need root and the lab tools, and skip without them (fail
// with VIGIL_E2E_REQUIRED=1). Everything, SSDP included, happens inside the
// lab's namespaces: every socket the package opens is created through
// Discoverer.OpenSocket inside the node's namespace.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/upnp"
	"github.com/vigil-lb/vigil/testing/lab"
)

var (
	labVIP = netip.MustParseAddr("198.18.0.150")
	labExt = netip.MustParseAddr("198.19.0.1")
)

type labNet struct {
	*lab.Network
	node *lab.Host
	// in runs socket creation inside the node's namespace.
	in upnp.Discoverer
}

// newLab builds a one-node lab with miniupnpd in secure mode on the gateway
// and the VIP on the node's eth0.
func newLab(t *testing.T) *labNet {
	t.Helper()
	return newLabNodes(t, 1)
}

// newLabNodes is newLab with nodes nodes; the VIP is on the first.
func newLabNodes(t *testing.T, nodes int) *labNet {
	t.Helper()
	if why := lab.Missing(); why != "" {
		if os.Getenv("VIGIL_E2E_REQUIRED") == "1" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := lab.NewNetwork(ctx, t.TempDir(), lab.Options{Nodes: nodes})
	if err != nil {
		t.Fatalf("lab network: %v", err)
	}
	t.Cleanup(n.Close)
	p, err := n.StartUPnP(ctx, lab.UPnPOptions{Secure: true})
	if err != nil {
		t.Fatalf("miniupnpd: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- miniupnpd ----\n%s", p.Log())
		}
	})
	node := n.Nodes[0]
	if _, err := n.Exec(ctx, node, "ip", "addr", "add", labVIP.String()+"/32", "dev", "eth0"); err != nil {
		t.Fatalf("add VIP: %v", err)
	}
	return &labNet{Network: n, node: node, in: inNS(node)}
}

// inNS is a Discoverer whose sockets are made in h's namespace.
func inNS(h *lab.Host) upnp.Discoverer {
	return upnp.Discoverer{OpenSocket: func(open func() error) error { return netnstest.InNS(h.NS, open) }}
}

func (l *labNet) discover(t *testing.T, ctx context.Context, local netip.Addr) *upnp.Gateway {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	g, err := l.in.Discover(ctx, local)
	if err != nil {
		t.Fatalf("Discover from %s: %v", local, err)
	}
	t.Logf("Discover from %s: %s (%s) in %v", local, g.URL(), g.Service(), time.Since(start).Round(time.Millisecond))
	return g
}

func (l *labNet) mappings(t *testing.T, ctx context.Context) []lab.Mapping {
	t.Helper()
	ms, err := l.Mappings(ctx)
	if err != nil {
		t.Fatalf("list mappings: %v", err)
	}
	slices.SortFunc(ms, func(a, b lab.Mapping) int {
		if c := strings.Compare(a.Proto, b.Proto); c != 0 {
			return c
		}
		return int(a.ExternalPort) - int(b.ExternalPort)
	})
	return ms
}

// udpEcho answers every datagram to at (inside ns) with the same bytes,
// until the test ends.
func udpEcho(t *testing.T, ns string, at netip.AddrPort) {
	t.Helper()
	var pc net.PacketConn
	if err := netnstest.InNS(ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", at.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
}

// udpPing sends one datagram from ns to to and waits up to 2 s for the echo.
func udpPing(ns string, to netip.AddrPort) error {
	var c net.Conn
	if err := netnstest.InNS(ns, func() (err error) {
		c, err = net.Dial("udp4", to.String())
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "ping" {
		return errors.New("wrong echo " + string(buf[:n]))
	}
	return nil
}

// diff is cmp.Diff (-want +got) for values holding netip types and errors.
func diff(want, got any) string {
	return cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}), cmpopts.EquateErrors())
}

func TestLabGateway(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	g := l.discover(t, ctx, labVIP)
	if g.URL() != l.UPnPRootDesc() {
		t.Errorf("URL = %s, want %s", g.URL(), l.UPnPRootDesc())
	}
	if g.Local() != labVIP {
		t.Errorf("Local = %s, want %s", g.Local(), labVIP)
	}
	ext, err := g.ExternalIP(ctx)
	if err != nil || ext != labExt {
		t.Fatalf("ExternalIP = %v, %v; want %v (reserved, and not filtered)", ext, err, labExt)
	}

	// TCP: the WAN host reaches a server in the node through the gateway.
	if _, err := l.Serve(l.node, 8080); err != nil {
		t.Fatal(err)
	}
	tcp := upnp.Mapping{Protocol: "TCP", ExternalPort: 8080, Internal: netip.AddrPortFrom(labVIP, 8080), Description: "vigil test/tcp", Lease: time.Hour}
	if err := g.Add(ctx, tcp); err != nil {
		t.Fatalf("Add TCP: %v", err)
	}
	wantTCP := lab.Mapping{Proto: "TCP", ExternalPort: 8080, Internal: netip.AddrPortFrom(labVIP, 8080), Description: "vigil test/tcp"}
	if ms := l.mappings(t, ctx); !slices.Contains(ms, wantTCP) {
		t.Errorf("mappings = %+v, want %+v among them", ms, wantTCP)
	}
	if got, err := l.DialFromWAN(ctx, labExt, 8080); err != nil || got != l.node.Name {
		t.Errorf("WAN to %s:8080 = %q, %v; want %s", labExt, got, err, l.node.Name)
	}
	if err := g.Add(ctx, tcp); err != nil {
		t.Errorf("renewing the TCP mapping: %v", err)
	}

	// UDP.
	udpEcho(t, l.node.NS, netip.AddrPortFrom(labVIP, 5353))
	udp := upnp.Mapping{Protocol: "UDP", ExternalPort: 5353, Internal: netip.AddrPortFrom(labVIP, 5353), Description: "vigil test/udp", Lease: time.Hour}
	if err := g.Add(ctx, udp); err != nil {
		t.Fatalf("Add UDP: %v", err)
	}
	wantUDP := lab.Mapping{Proto: "UDP", ExternalPort: 5353, Internal: netip.AddrPortFrom(labVIP, 5353), Description: "vigil test/udp"}
	if ms := l.mappings(t, ctx); !slices.Contains(ms, wantUDP) {
		t.Errorf("mappings = %+v, want %+v among them", ms, wantUDP)
	}
	if err := udpPing(l.WAN.NS, netip.AddrPortFrom(labExt, 5353)); err != nil {
		t.Errorf("UDP from the WAN to %s:5353: %v", labExt, err)
	}

	// Delete, twice: the second finds nothing and is no error.
	for i := range 2 {
		if err := g.Delete(ctx, "TCP", 8080); err != nil {
			t.Errorf("Delete TCP 8080 (#%d): %v", i+1, err)
		}
	}
	if err := g.Delete(ctx, "udp", 5353); err != nil {
		t.Errorf("Delete UDP 5353: %v", err)
	}
	if ms := l.mappings(t, ctx); len(ms) != 0 {
		t.Errorf("mappings after Delete = %+v, want none", ms)
	}
	if got, err := l.DialFromWAN(ctx, labExt, 8080); err == nil {
		t.Errorf("WAN to %s:8080 still reaches %q after Delete", labExt, got)
	}
}

// Secure mode: asked from the node's own address, the gateway refuses a
// mapping to the VIP; asked from the VIP it accepts. So the requests really
// come from the Gateway's local address.
func TestLabSecureMode(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	m := upnp.Mapping{Protocol: "TCP", ExternalPort: 9090, Internal: netip.AddrPortFrom(labVIP, 9090), Description: "vigil secure", Lease: time.Hour}
	fromNode := l.discover(t, ctx, l.node.IPv4)
	err := fromNode.Add(ctx, m)
	if err == nil {
		t.Fatalf("secure mode accepted a mapping to %s asked from %s", labVIP, l.node.IPv4)
	}
	if upnp.ErrorCode(err) == 0 {
		t.Errorf("refusal = %v, want a UPnP error", err)
	}
	t.Logf("asked from the node's address: %v", err)
	if ms := l.mappings(t, ctx); len(ms) != 0 {
		t.Errorf("mappings = %+v, want none", ms)
	}

	fromVIP := l.discover(t, ctx, labVIP)
	if err := fromVIP.Add(ctx, m); err != nil {
		t.Fatalf("Add from the VIP: %v", err)
	}
	want := []lab.Mapping{{Proto: "TCP", ExternalPort: 9090, Internal: netip.AddrPortFrom(labVIP, 9090), Description: "vigil secure"}}
	if diff := diff(want, l.mappings(t, ctx)); diff != "" {
		t.Errorf("mappings (-want +got):\n%s", diff)
	}
	// Nor may the node's address delete the VIP's mapping.
	err = fromNode.Delete(ctx, "TCP", 9090)
	if upnp.ErrorCode(err) == 0 {
		t.Errorf("Delete of %s's mapping asked from %s = %v, want a UPnP error", labVIP, l.node.IPv4, err)
	}
	t.Logf("delete asked from the node's address: %v", err)
	if diff := diff(want, l.mappings(t, ctx)); diff != "" {
		t.Errorf("mappings after the refused delete (-want +got):\n%s", diff)
	}
	if err := fromVIP.Delete(ctx, "TCP", 9090); err != nil {
		t.Errorf("Delete from the VIP: %v", err)
	}
}

// Where no gateway listens, Discover says so when its context ends.
func TestLabDiscoverNoGateway(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	wan := upnp.Discoverer{OpenSocket: func(open func() error) error { return netnstest.InNS(l.WAN.NS, open) }}
	start := time.Now()
	g, err := wan.Discover(ctx, l.WAN.IPv4)
	if err == nil {
		t.Fatalf("Discover on the WAN side found %s", g.URL())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Discover = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Discover took %v after a 1.5 s deadline", d)
	}
	t.Logf("no gateway: %v", err)
}

// labManager is a Manager whose sockets are made in a node's namespace,
// running until end.
type labManager struct {
	t       *testing.T
	m       *upnp.Manager
	changed chan struct{} // coalesced OnChange
	stop    context.CancelFunc
	done    chan error
	once    sync.Once
	err     error
}

func startLabManager(t *testing.T, ctx context.Context, h *lab.Host) *labManager {
	t.Helper()
	d := inNS(h)
	lm := &labManager{t: t, changed: make(chan struct{}, 1), done: make(chan error, 1)}
	lm.m = upnp.NewManager(upnp.Config{
		OnChange: func(string) {
			select {
			case lm.changed <- struct{}{}:
			default:
			}
		},
		Discover: func(ctx context.Context, local netip.Addr) (upnp.Client, error) {
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			g, err := d.Discover(ctx, local)
			if err != nil {
				return nil, err
			}
			return g, nil
		},
	})
	runCtx, stop := context.WithCancel(ctx)
	lm.stop = stop
	go func() { lm.done <- lm.m.Run(runCtx) }()
	t.Cleanup(func() { _ = lm.end() })
	return lm
}

// end ends Run and returns what it returned.
func (lm *labManager) end() error {
	lm.once.Do(func() {
		lm.stop()
		lm.err = <-lm.done
	})
	return lm.err
}

// waitState waits until key's State satisfies ok.
func (lm *labManager) waitState(ctx context.Context, key, what string, ok func(upnp.State) bool) upnp.State {
	lm.t.Helper()
	for {
		if s := lm.m.State(key); ok(s) {
			return s
		}
		select {
		case <-lm.changed:
		case <-ctx.Done():
			lm.t.Fatalf("%s: State = %+v", what, lm.m.State(key))
		}
	}
}

func mapped(n int) func(upnp.State) bool {
	return func(s upnp.State) bool { return len(s.Mapped) == n || s.Err != nil }
}

// The Manager against miniupnpd: Set maps, Set(nil) unmaps, the end of Run
// leaves what is mapped in place, and Drain after Run ended deletes it.
func TestLabManager(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := l.Serve(l.node, 8080); err != nil {
		t.Fatal(err)
	}
	lm := startLabManager(t, ctx, l.node)

	const key = "default/web"
	want := []upnp.Mapping{
		{Protocol: "TCP", ExternalPort: 8080, Internal: netip.AddrPortFrom(labVIP, 8080), Description: "vigil default/web", Lease: time.Hour},
		{Protocol: "UDP", ExternalPort: 8080, Internal: netip.AddrPortFrom(labVIP, 8080), Description: "vigil default/web", Lease: time.Hour},
	}
	start := time.Now()
	lm.m.Set(key, labVIP, want)
	s := lm.waitState(ctx, key, "after Set", mapped(2))
	t.Logf("Set to mapped: %v", time.Since(start).Round(time.Millisecond))
	if diff := diff(upnp.State{External: labExt, Mapped: want}, s); diff != "" {
		t.Errorf("State (-want +got):\n%s", diff)
	}
	wantLab := []lab.Mapping{
		{Proto: "TCP", ExternalPort: 8080, Internal: netip.AddrPortFrom(labVIP, 8080), Description: "vigil default/web"},
		{Proto: "UDP", ExternalPort: 8080, Internal: netip.AddrPortFrom(labVIP, 8080), Description: "vigil default/web"},
	}
	l.wantForwarded(t, ctx, "after Set", wantLab, l.node)

	start = time.Now()
	lm.m.Set(key, labVIP, nil)
	lm.waitState(ctx, key, "after Set(nil)", mapped(0))
	t.Logf("Set(nil) to unmapped: %v", time.Since(start).Round(time.Millisecond))
	if ms := l.mappings(t, ctx); len(ms) != 0 {
		t.Errorf("gateway mappings after Set(nil) = %+v, want none", ms)
	}

	lm.m.Set(key, labVIP, want[:1])
	lm.waitState(ctx, key, "after the second Set", mapped(1))
	if err := lm.end(); err != nil {
		t.Errorf("Run: %v", err)
	}
	l.wantForwarded(t, ctx, "after Run ended", wantLab[:1], l.node)
	start = time.Now()
	if err := lm.m.Drain(ctx, key); err != nil {
		t.Errorf("Drain after Run ended: %v", err)
	}
	t.Logf("Drain after Run ended: %v", time.Since(start).Round(time.Millisecond))
	l.wantForwarded(t, ctx, "after Drain", nil, nil)
}

// wantForwarded checks the gateway's mappings and that the WAN host reaches
// port 8080 of to through the gateway's external address (to nil: reaches
// nothing).
func (l *labNet) wantForwarded(t *testing.T, ctx context.Context, when string, want []lab.Mapping, to *lab.Host) {
	t.Helper()
	if diff := diff(want, l.mappings(t, ctx)); diff != "" {
		t.Errorf("gateway mappings %s (-want +got):\n%s", when, diff)
	}
	got, err := l.DialFromWAN(ctx, labExt, 8080)
	switch {
	case to == nil && err == nil:
		t.Errorf("WAN to %s:8080 %s reaches %q, want nothing", labExt, when, got)
	case to != nil && (err != nil || got != to.Name):
		t.Errorf("WAN to %s:8080 %s = %q, %v; want %s", labExt, when, got, err, to.Name)
	}
}

// moveVIP moves the VIP from one node to another, and makes the gateway
// forget where it was.
func (l *labNet) moveVIP(t *testing.T, ctx context.Context, from, to *lab.Host) {
	t.Helper()
	for _, cmd := range []struct {
		h    *lab.Host
		argv []string
	}{
		{from, []string{"ip", "addr", "del", labVIP.String() + "/32", "dev", "eth0"}},
		{to, []string{"ip", "addr", "add", labVIP.String() + "/32", "dev", "eth0"}},
		{l.Gateway, []string{"ip", "neigh", "flush", "to", labVIP.String()}},
	} {
		if out, err := l.Exec(ctx, cmd.h, cmd.argv...); err != nil {
			t.Fatalf("%s: %v: %v\n%s", cmd.h.Name, cmd.argv, err, out)
		}
	}
}

// Hand-over (bug 4 of issue 8): the holder of a VIP stops (its Manager's
// Run ends) and the mapping stays on the gateway in secure mode; the VIP
// moves to the next node, whose Manager renews the mapping from the VIP and
// serves it; the last holder's Drain, with the VIP still up, deletes it.
func TestLabHandOver(t *testing.T) {
	l := newLabNodes(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, next := l.Nodes[0], l.Nodes[1]
	for _, h := range l.Nodes {
		if _, err := l.Serve(h, 8080); err != nil {
			t.Fatal(err)
		}
	}
	const key = "default/web"
	want := []upnp.Mapping{{Protocol: "TCP", ExternalPort: 8080, Internal: netip.AddrPortFrom(labVIP, 8080), Description: "vigil default/web", Lease: time.Hour}}
	wantLab := []lab.Mapping{{Proto: "TCP", ExternalPort: 8080, Internal: netip.AddrPortFrom(labVIP, 8080), Description: "vigil default/web"}}

	a := startLabManager(t, ctx, first)
	a.m.Set(key, labVIP, want)
	if s := a.waitState(ctx, key, "first holder", mapped(1)); s.Err != nil {
		t.Fatalf("first holder: %v", s.Err)
	}
	l.wantForwarded(t, ctx, "with the first holder", wantLab, first)
	if err := a.end(); err != nil {
		t.Errorf("first holder's Run: %v", err)
	}
	l.wantForwarded(t, ctx, "after the first holder stopped", wantLab, first)

	l.moveVIP(t, ctx, first, next)
	b := startLabManager(t, ctx, next)
	start := time.Now()
	b.m.Set(key, labVIP, want)
	s := b.waitState(ctx, key, "next holder", mapped(1))
	t.Logf("next holder renewed the mapping in %v", time.Since(start).Round(time.Millisecond))
	if diff := diff(upnp.State{External: labExt, Mapped: want}, s); diff != "" {
		t.Errorf("next holder's State (-want +got):\n%s", diff)
	}
	l.wantForwarded(t, ctx, "with the next holder", wantLab, next)

	start = time.Now()
	if err := b.m.Drain(ctx, key); err != nil {
		t.Fatalf("Drain by the last holder: %v", err)
	}
	t.Logf("Drain with Run running: %v", time.Since(start).Round(time.Millisecond))
	l.wantForwarded(t, ctx, "after Drain", nil, nil)
	if diff := diff(upnp.State{}, b.m.State(key)); diff != "" {
		t.Errorf("State after Drain (-want +got):\n%s", diff)
	}
}

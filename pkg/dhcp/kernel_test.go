package dhcp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/dhcp"
)

// The test LAN: namespace A runs dnsmasq on eth0 (serverIP/24), namespace B
// holds the other end of the veth and the clients' macvlans on it.
var (
	serverIP   = netip.MustParseAddr("198.18.0.1")
	serverIP6  = netip.MustParseAddr("fd00:1ab::1")
	rangeFirst = netip.MustParseAddr("198.18.0.200")
	rangeLast  = netip.MustParseAddr("198.18.0.250")
)

// shortT1T2 has dnsmasq hand out T1 3 s and T2 6 s with its 2-minute
// leases (it sends 3 s when asked for less).
var shortT1T2 = []string{"--dhcp-option=option:T1,3", "--dhcp-option=option:T2,6"}

const (
	macA = "02:00:00:00:aa:01"
	macB = "02:00:00:00:aa:02"
)

// kernelWait bounds the waits of kernel tests; only a failing test waits
// that long.
const kernelWait = 5 * time.Second

type lan struct {
	t         *testing.T
	A, B      string
	dir       string
	leaseFile string
	dnsmasq   *exec.Cmd
	log       *syncBuffer
}

// newLAN creates namespaces A and B joined by a veth and starts dnsmasq
// in A, with extra arguments appended to the lab's.
func newLAN(t *testing.T, extra ...string) *lan {
	t.Helper()
	netnstest.Require(t)
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("kernel test: needs dnsmasq (package dnsmasq-base)")
	}
	l := &lan{t: t, A: netnstest.New(t), B: netnstest.New(t), dir: t.TempDir()}
	netnstest.IP(t, l.A, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", l.B)
	netnstest.IP(t, l.A, "addr", "add", serverIP.String()+"/24", "dev", "eth0")
	netnstest.IP(t, l.A, "addr", "add", serverIP6.String()+"/64", "dev", "eth0", "nodad")
	netnstest.IP(t, l.A, "link", "set", "lo", "up")
	netnstest.IP(t, l.A, "link", "set", "eth0", "up")
	netnstest.IP(t, l.B, "link", "set", "eth0", "up")
	// The parent must not answer ARP for addresses bound on a macvlan, as
	// on vigil's nodes (arp_ignore=1).
	l.exec(l.B, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
	l.leaseFile = filepath.Join(l.dir, "dnsmasq.leases")
	l.startDNSMasq(fmt.Sprintf("--dhcp-range=%s,%s,255.255.255.0,120s", rangeFirst, rangeLast), extra...)
	return l
}

// startDNSMasq runs dnsmasq in A as testing/lab's StartDHCP does and waits
// until it listens; it is killed when the test ends.
func (l *lan) startDNSMasq(dhcpRange string, extra ...string) {
	t := l.t
	t.Helper()
	args := append([]string{"netns", "exec", l.A, "dnsmasq", "--keep-in-foreground",
		"--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll", "--port=0",
		"--interface=eth0", "--except-interface=lo", "--bind-interfaces",
		dhcpRange, "--dhcp-authoritative", "--dhcp-rapid-commit", "--no-ping",
		"--dhcp-leasefile=" + l.leaseFile, "--pid-file=" + filepath.Join(l.dir, "dnsmasq.pid"),
		"--user=root", "--group=root", "--log-dhcp", "--log-facility=-"}, extra...)
	cmd := exec.Command("ip", args...)
	l.log = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = l.log, l.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	l.dnsmasq = cmd
	log := l.log
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", log)
		}
	})
	if !waitFor(func() bool {
		out, _ := exec.Command("ip", "netns", "exec", l.A, "ss", "-Hulpn", "sport = :67").CombinedOutput()
		return strings.Contains(string(out), "dnsmasq")
	}) {
		t.Fatalf("dnsmasq does not listen on port 67:\n%s", l.log)
	}
}

// stopDNSMasq kills dnsmasq at once.
func (l *lan) stopDNSMasq() {
	l.dnsmasq.Process.Kill()
	l.dnsmasq.Wait()
}

func (l *lan) exec(ns string, args ...string) {
	l.t.Helper()
	args = append([]string{"netns", "exec", ns}, args...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// macvlan creates macvlan name with address mac on B's eth0.
func (l *lan) macvlan(name, mac string) {
	l.t.Helper()
	netnstest.IP(l.t, l.B, "link", "add", name, "link", "eth0", "address", mac, "type", "macvlan", "mode", "bridge")
	netnstest.IP(l.t, l.B, "link", "set", name, "up")
}

// dnsmasqLease is one line of dnsmasq's lease file.
type dnsmasqLease struct {
	MAC      string
	Addr     netip.Addr
	Hostname string
}

func (l *lan) leases() []dnsmasqLease {
	b, err := os.ReadFile(l.leaseFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		l.t.Fatal(err)
	}
	var out []dnsmasqLease
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		a, err := netip.ParseAddr(f[2])
		if err != nil {
			continue
		}
		out = append(out, dnsmasqLease{MAC: f[1], Addr: a, Hostname: f[3]})
	}
	return out
}

// leaseOf returns dnsmasq's lease for mac, waiting for it to match ok.
func (l *lan) waitLease(mac string, ok func(dnsmasqLease, bool) bool) (dnsmasqLease, bool) {
	var got dnsmasqLease
	var found bool
	waitFor(func() bool {
		got, found = dnsmasqLease{}, false
		for _, d := range l.leases() {
			if d.MAC == mac {
				got, found = d, true
			}
		}
		return ok(got, found)
	})
	return got, found
}

// client is a dhcp.Client running in namespace ns.
type client struct {
	*dhcp.Client
	t       *testing.T
	changes chan time.Time // one per OnChange
	cancel  context.CancelFunc
	done    chan error
}

// startClient creates a Client in ns (so its socket lives there) and runs
// it; it is stopped and closed when the test ends.
func startClient(t *testing.T, ns string, cfg dhcp.Config) *client {
	t.Helper()
	return startClientWith(t, ns, cfg, dhcp.New)
}

// startClientWith is startClient with another constructor (dhcp.New6).
func startClientWith(t *testing.T, ns string, cfg dhcp.Config, newClient func(dhcp.Config) (*dhcp.Client, error)) *client {
	t.Helper()
	c := &client{t: t, changes: make(chan time.Time, 16)}
	cfg.OnChange = func() {
		select {
		case c.changes <- time.Now():
		default:
			t.Error("OnChange: too many calls")
		}
	}
	cfg.Log = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := netnstest.InNS(ns, func() error {
		var err error
		c.Client, err = newClient(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stop()
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	c.run()
	return c
}

func (c *client) run() {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan error, 1)
	go func() { c.done <- c.Run(ctx) }()
}

// stop ends Run and checks that it returned nil.
func (c *client) stop() {
	c.t.Helper()
	if c.done == nil {
		return
	}
	c.cancel()
	select {
	case err := <-c.done:
		if err != nil {
			c.t.Errorf("Run: %v", err)
		}
	case <-time.After(kernelWait):
		c.t.Error("Run did not return after its context ended")
	}
	c.done = nil
}

// waitChange waits for the next OnChange, at most within.
func (c *client) waitChange(within time.Duration) (time.Time, bool) {
	select {
	case at := <-c.changes:
		return at, true
	case <-time.After(within):
		return time.Time{}, false
	}
}

// acquire waits up to 2 s for the first lease.
func (c *client) acquire() dhcp.Lease {
	c.t.Helper()
	return c.acquireWithin(2 * time.Second)
}

func (c *client) acquireWithin(d time.Duration) dhcp.Lease {
	c.t.Helper()
	start := time.Now()
	if _, ok := c.waitChange(d); !ok {
		c.t.Fatalf("no lease within %v", d)
	}
	l, ok := c.Lease()
	if !ok {
		c.t.Fatal("OnChange called but Lease() has none")
	}
	c.t.Logf("acquired %s in %v", l.Addr, time.Since(start).Round(time.Millisecond))
	return l
}

// noChange fails if OnChange was called since the last wait.
func (c *client) noChange() {
	c.t.Helper()
	select {
	case <-c.changes:
		c.t.Error("OnChange called, want not")
	default:
	}
}

func inRange(a netip.Addr) bool { return !a.Less(rangeFirst) && !rangeLast.Less(a) }

// waitFor polls cond until it holds or kernelWait passes.
func waitFor(cond func() bool) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(kernelWait)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return cond()
		}
	}
	return true
}

func TestKernelAcquire(t *testing.T) {
	t.Parallel()
	l := newLAN(t)
	l.macvlan("mv0", macA)
	c := startClient(t, l.B, dhcp.Config{Interface: "mv0", Hostname: "svc-web"})
	got := c.acquire()

	if !inRange(got.Addr) {
		t.Errorf("address %s outside dnsmasq's range %s-%s", got.Addr, rangeFirst, rangeLast)
	}
	if want := netip.PrefixFrom(got.Addr, 24); got.Prefix != want {
		t.Errorf("Prefix = %s, want %s", got.Prefix, want)
	}
	if got.Server != serverIP || got.Router != serverIP {
		t.Errorf("Server, Router = %s, %s; want %s (dnsmasq's own address) for both", got.Server, got.Router, serverIP)
	}
	// dnsmasq's 2-minute lease; it puts T1 and T2 up to lease/16 early.
	near := func(name string, at time.Time, lo, hi time.Duration) {
		if d := at.Sub(got.Acquired); d < lo || d > hi {
			t.Errorf("%s = Acquired%+v, want within [%v, %v]", name, d, lo, hi)
		}
	}
	near("Expiry", got.Expiry, 119*time.Second, 120*time.Second)
	near("T1", got.T1, 52*time.Second, 60*time.Second)
	near("T2", got.T2, 97*time.Second, 105*time.Second)

	d, ok := l.waitLease(macA, func(d dnsmasqLease, ok bool) bool { return ok })
	if want := (dnsmasqLease{MAC: macA, Addr: got.Addr, Hostname: "svc-web"}); !ok || d != want {
		t.Errorf("dnsmasq lease = %+v (found %t), want %+v", d, ok, want)
	}
	c.noChange()
}

func TestKernelRequestedIP(t *testing.T) {
	t.Parallel()
	l := newLAN(t)
	l.macvlan("mv0", macA)
	want := netip.MustParseAddr("198.18.0.222")
	c := startClient(t, l.B, dhcp.Config{Interface: "mv0", RequestedIP: want})
	if got := c.acquire(); got.Addr != want {
		t.Errorf("got %s, asked for %s", got.Addr, want)
	}
}

func TestKernelRelease(t *testing.T) {
	t.Parallel()
	l := newLAN(t)
	l.macvlan("mv0", macA)
	c := startClient(t, l.B, dhcp.Config{Interface: "mv0", Hostname: "svc-web"})
	got := c.acquire()
	if _, ok := l.waitLease(macA, func(_ dnsmasqLease, ok bool) bool { return ok }); !ok {
		t.Fatal("dnsmasq has no lease for the client")
	}
	if err := c.Release(); err == nil {
		t.Error("Release while Run runs: no error")
	}

	c.stop()
	if l, ok := c.Lease(); !ok || l.Addr != got.Addr {
		t.Errorf("after Run returned: Lease() = %v, %t; want the lease kept until Release", l.Addr, ok)
	}
	if err := c.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, ok := c.Lease(); ok {
		t.Error("Lease() after Release: still one")
	}
	if d, ok := l.waitLease(macA, func(_ dnsmasqLease, ok bool) bool { return !ok }); ok {
		t.Errorf("dnsmasq still has %+v after Release", d)
	}
	// dnsmasq rewrites its lease file before its log line reaches our pipe.
	released := "DHCPRELEASE(eth0) " + got.Addr.String() + " " + macA
	if !waitFor(func() bool { return strings.Contains(l.log.String(), released) }) {
		t.Errorf("no DHCPRELEASE for %s %s in dnsmasq's log", got.Addr, macA)
	}
	if err := c.Release(); err != nil {
		t.Errorf("second Release: %v, want nil (nothing to release)", err)
	}
}

// Two MACs get two addresses; the same MAC again, on a new interface as
// after a failover, gets the same address.
func TestKernelTwoClientsAndSameMAC(t *testing.T) {
	t.Parallel()
	l := newLAN(t)
	l.macvlan("mv0", macA)
	l.macvlan("mv1", macB)
	a := startClient(t, l.B, dhcp.Config{Interface: "mv0"})
	b := startClient(t, l.B, dhcp.Config{Interface: "mv1"})
	la, lb := a.acquire(), b.acquire()
	if la.Addr == lb.Addr {
		t.Fatalf("both clients got %s", la.Addr)
	}

	a.stop() // no release: the lease stays with macA on the server
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	netnstest.IP(t, l.B, "link", "del", "mv0")
	l.macvlan("mv9", macA)
	again := startClient(t, l.B, dhcp.Config{Interface: "mv9"})
	if got := again.acquire(); got.Addr != la.Addr {
		t.Errorf("same MAC again got %s, want %s", got.Addr, la.Addr)
	}
}

// bind puts the leased address on the client's macvlan, as the agent does:
// the server answers a renewal by unicast to it and must resolve it.
func (l *lan) bind(ifname string, lease dhcp.Lease) {
	netnstest.IP(l.t, l.B, "addr", "add", lease.Prefix.String(), "dev", ifname)
}

func checkShortT1T2(t *testing.T, l dhcp.Lease) {
	t.Helper()
	t1, t2 := l.T1.Sub(l.Acquired), l.T2.Sub(l.Acquired)
	if t1 < 2500*time.Millisecond || t1 > 3*time.Second || t2 < 5500*time.Millisecond || t2 > 6*time.Second {
		t.Fatalf("T1, T2 = Acquired%+v, Acquired%+v; want 3s, 6s (dnsmasq options)", t1, t2)
	}
}

// waitRenewal waits until c's lease shows an ACK after prev's.
func waitRenewal(t *testing.T, c *client, prev dhcp.Lease, within time.Duration) dhcp.Lease {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(within)
	for {
		if l, ok := c.Lease(); ok && l.Acquired.After(prev.Acquired) {
			return l
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("no renewal within %v", within)
		}
	}
}

// The renewal (unicast) comes at T1.
func TestKernelRenew(t *testing.T) {
	t.Parallel()
	l := newLAN(t, shortT1T2...)
	l.macvlan("mv0", macA)
	c := startClient(t, l.B, dhcp.Config{Interface: "mv0"})
	first := c.acquire()
	l.bind("mv0", first)
	checkShortT1T2(t, first)
	renewed := waitRenewal(t, c, first, 5*time.Second)
	if late := renewed.Acquired.Sub(first.T1); late < 0 || late > 500*time.Millisecond {
		t.Errorf("renewed %v after T1, want at T1 (3s), well before T2 (6s)", late)
	}
	if renewed.Addr != first.Addr {
		t.Errorf("renewal moved the address %s -> %s", first.Addr, renewed.Addr)
	}
	c.noChange()
}

// When the server does not answer unicast, the renewal fails and the
// broadcast rebinding at T2 keeps the lease.
func TestKernelRebind(t *testing.T) {
	t.Parallel()
	l := newLAN(t, shortT1T2...)
	l.macvlan("mv0", macA)
	c := startClient(t, l.B, dhcp.Config{Interface: "mv0"})
	first := c.acquire()
	l.bind("mv0", first)
	nft := exec.Command("ip", "netns", "exec", l.A, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(fmt.Sprintf(`table ip vigiltest {
	chain input { type filter hook input priority 0; ip daddr %s udp dport 67 drop; }
}`, serverIP))
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	checkShortT1T2(t, first)
	renewed := waitRenewal(t, c, first, 8*time.Second)
	if late := renewed.Acquired.Sub(first.T2); late < 0 || late > 500*time.Millisecond {
		t.Errorf("rebound %v after T2, want at T2 (6s)", late)
	}
	if renewed.Addr != first.Addr {
		t.Errorf("rebinding moved the address %s -> %s", first.Addr, renewed.Addr)
	}
	c.noChange()
}

// A server that no longer knows the lease answers the renewal with a NAK:
// the client drops the lease and acquires a new one.
func TestKernelNAK(t *testing.T) {
	t.Parallel()
	l := newLAN(t, shortT1T2...)
	l.macvlan("mv0", macA)
	c := startClient(t, l.B, dhcp.Config{Interface: "mv0"})
	first := c.acquire()
	l.bind("mv0", first)

	// dnsmasq restarts with another range and no leases.
	l.stopDNSMasq()
	if err := os.Remove(l.leaseFile); err != nil {
		t.Fatal(err)
	}
	l.startDNSMasq("--dhcp-range=198.18.0.100,198.18.0.150,255.255.255.0,120s", shortT1T2...)

	if _, ok := c.waitChange(5 * time.Second); !ok {
		t.Fatal("no OnChange for the NAK")
	}
	if _, ok := c.waitChange(2 * time.Second); !ok {
		t.Fatal("no OnChange for the new lease")
	}
	got, ok := c.Lease()
	lo, hi := netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("198.18.0.150")
	if !ok || got.Addr.Less(lo) || hi.Less(got.Addr) {
		t.Errorf("after NAK: Lease() = %v, %t; want an address in %s-%s", got.Addr, ok, lo, hi)
	}
	nak := "DHCPNAK(eth0) " + first.Addr.String() + " " + macA
	if !waitFor(func() bool { return strings.Contains(l.log.String(), nak) }) {
		t.Errorf("no DHCPNAK for %s in dnsmasq's log", first.Addr)
	}
}

// Close while Run runs makes Run return an error.
func TestKernelClose(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	ns := netnstest.New(t)
	netnstest.IP(t, ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	netnstest.IP(t, ns, "link", "set", "eth0", "up")
	var c *dhcp.Client
	if err := netnstest.InNS(ns, func() error {
		var err error
		c, err = dhcp.New(dhcp.Config{Interface: "eth0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Run after Close returned nil, want an error")
		}
	case <-time.After(kernelWait):
		t.Fatal("Run did not return after Close")
	}
	if err := c.Run(context.Background()); err == nil {
		t.Error("Run on a closed client: no error")
	}
	if err := netnstest.InNS(ns, func() error {
		_, err := dhcp.New(dhcp.Config{Interface: "nosuch0"})
		if err == nil {
			return errors.New("New for a missing interface: no error")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// TestKernelRenewDefault waits for a renewal at dnsmasq's own T1 (about a
// minute into its 2-minute lease). Set VIGIL_SLOW=1 to run it.
func TestKernelRenewDefault(t *testing.T) {
	if os.Getenv("VIGIL_SLOW") != "1" {
		t.Skip("waits a minute for dnsmasq's T1; set VIGIL_SLOW=1")
	}
	t.Parallel()
	l := newLAN(t)
	l.macvlan("mv0", macA)
	c := startClient(t, l.B, dhcp.Config{Interface: "mv0"})
	first := c.acquire()
	l.bind("mv0", first)
	renewed := waitRenewal(t, c, first, first.T1.Sub(first.Acquired)+5*time.Second)
	t.Logf("renewed %v after the first ACK; T1 was Acquired%+v", renewed.Acquired.Sub(first.Acquired).Round(time.Millisecond),
		first.T1.Sub(first.Acquired).Round(time.Millisecond))
	if late := renewed.Acquired.Sub(first.T1); late < 0 || late > time.Second {
		t.Errorf("renewed %v after T1, want within 1s", late)
	}
	if renewed.Addr != first.Addr || renewed.Expiry.Sub(first.Expiry) < 50*time.Second {
		t.Errorf("renewal: %s until %v, want %s with the expiry moved ~1 min", renewed.Addr, renewed.Expiry, first.Addr)
	}
	c.noChange()
}

// syncBuffer is a bytes.Buffer safe for a process's output and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// tWriter sends the client's logs to the test log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

package vip_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/announce"
	"github.com/vigil-lb/vigil/pkg/netif"
	"github.com/vigil-lb/vigil/pkg/vip"
)

// fixture creates a namespace with a veth pair inside it:
//
//	eth0  up  198.18.0.1/24, fe80::1/64, fd00:1ab::1/64 (no DAD, no SLAAC)
//	eth1  up  (peer, no addresses)
//	lo    up
func fixture(t *testing.T) (string, *netlink.Handle) {
	t.Helper()
	ns := netnstest.New(t)
	netnstest.IP(t, ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	for _, l := range []string{"eth0", "eth1"} {
		netnstest.IP(t, ns, "link", "set", l, "addrgenmode", "none")
	}
	netnstest.IP(t, ns, "addr", "add", "198.18.0.1/24", "dev", "eth0")
	netnstest.IP(t, ns, "addr", "add", "fe80::1/64", "dev", "eth0", "nodad")
	netnstest.IP(t, ns, "addr", "add", "fd00:1ab::1/64", "dev", "eth0", "nodad")
	for _, l := range []string{"lo", "eth1", "eth0"} {
		netnstest.IP(t, ns, "link", "set", l, "up")
	}
	return ns, netnstest.HandleAt(t, ns)
}

// hostAddrs returns the /32 and /128 addresses on eth0.
func hostAddrs(t *testing.T, h *netlink.Handle) []netip.Addr {
	t.Helper()
	l, err := netif.OpenWith(h, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// sentLog records Announcer sends (Options.OnSent), which may come from the
// announcer's goroutine.
type sentLog struct {
	mu   sync.Mutex
	sent []netip.Addr
}

func (s *sentLog) onSent(a netip.Addr, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.sent = append(s.sent, a)
	}
}

func (s *sentLog) take() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sent
	s.sent = nil
	return out
}

// start runs m until the returned stop is called (or t ends).
func start(t *testing.T, m *vip.Manager) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestKernelUpDownRecover(t *testing.T) {
	var (
		v4    = netip.MustParseAddr("198.18.0.10")
		v6    = netip.MustParseAddr("fd00:1ab::10")
		other = netip.MustParseAddr("198.18.0.99") // a /32 vigil did not bind
	)
	tests := []struct {
		name  string
		iface string
	}{
		{"named interface", "eth0"},
		{"auto", "auto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, h := fixture(t)
			journal := filepath.Join(t.TempDir(), "run", "vips.json")
			sent := &sentLog{}
			cfg := vip.Config{
				Interface: tt.iface, Journal: journal,
				// One immediate announcement per Up, nothing after it.
				Announce: announce.Options{Burst: -1, Refresh: time.Hour, OnSent: sent.onSent},
			}
			var logs bytes.Buffer
			m := vip.New(cfg, logTo(&logs))
			stop := start(t, m)

			// Up binds, journals and announces at once; again is a no-op.
			if err := netnstest.InNS(ns, func() error {
				for _, a := range []netip.Addr{v6, v4, v4} {
					if err := m.Up(a, time.Time{}); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatalf("Up: %v", err)
			}
			both := []netip.Addr{v4, v6}
			if diff := cmp.Diff(both, hostAddrs(t, h), cmpAddr); diff != "" {
				t.Errorf("after Up: addresses on eth0 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(both, m.Bound(), cmpAddr); diff != "" {
				t.Errorf("after Up: Bound (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]entry{{"eth0", v4}, {"eth0", v6}}, readJournal(t, journal), cmpAddr); diff != "" {
				t.Errorf("after Up: journal (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]netip.Addr{v6, v4}, sent.take(), cmpAddr); diff != "" {
				t.Errorf("after Up: announcements sent (-want +got):\n%s", diff)
			}

			// Down unbinds and journals; again is a no-op.
			if err := netnstest.InNS(ns, func() error {
				for _, a := range []netip.Addr{v4, v4} {
					if err := m.Down(a); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatalf("Down: %v", err)
			}
			if diff := cmp.Diff([]netip.Addr{v6}, hostAddrs(t, h), cmpAddr); diff != "" {
				t.Errorf("after Down: addresses on eth0 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]netip.Addr{v6}, m.Bound(), cmpAddr); diff != "" {
				t.Errorf("after Down: Bound (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]entry{{"eth0", v6}}, readJournal(t, journal), cmpAddr); diff != "" {
				t.Errorf("after Down: journal (-want +got):\n%s", diff)
			}

			// The agent dies with v6 bound: Run ends, the address stays.
			stop()
			if diff := cmp.Diff([]netip.Addr{v6}, hostAddrs(t, h), cmpAddr); diff != "" {
				t.Fatalf("after the crash: addresses on eth0 (-want +got):\n%s", diff)
			}
			netnstest.IP(t, ns, "addr", "add", other.String()+"/32", "dev", "eth0")

			// The next life removes what the journal names, and only that.
			m2 := vip.New(cfg, logTo(&logs))
			var removed []netip.Addr
			if err := netnstest.InNS(ns, func() (err error) {
				removed, err = m2.Recover()
				return err
			}); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if diff := cmp.Diff([]netip.Addr{v6}, removed, cmpAddr); diff != "" {
				t.Errorf("Recover removed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]netip.Addr{other}, hostAddrs(t, h), cmpAddr); diff != "" {
				t.Errorf("after Recover: addresses on eth0 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]entry{}, readJournal(t, journal), cmpAddr); diff != "" {
				t.Errorf("after Recover: journal (-want +got):\n%s", diff)
			}
			if got := subnetAddrs(t, h); !hasAll(got, "198.18.0.1/24", "fd00:1ab::1/64", "fe80::1/64") {
				t.Errorf("after Recover: eth0 lost its own addresses: %v", got)
			}

			// A journal naming an address that is gone, and an interface
			// that is gone: nothing to remove, journal emptied.
			writeFile(t, journal, `[{"interface":"eth0","addr":"198.18.0.10"},{"interface":"vgl-ut-gone0","addr":"198.18.0.11"}]`)
			if err := netnstest.InNS(ns, func() (err error) {
				removed, err = vip.New(cfg, logTo(&logs)).Recover()
				return err
			}); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if diff := cmp.Diff([]netip.Addr(nil), removed, cmpAddr); diff != "" {
				t.Errorf("Recover of a stale journal removed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]entry{}, readJournal(t, journal), cmpAddr); diff != "" {
				t.Errorf("after Recover of a stale journal: journal (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]netip.Addr{other}, hostAddrs(t, h), cmpAddr); diff != "" {
				t.Errorf("after Recover of a stale journal: addresses on eth0 (-want +got):\n%s", diff)
			}
		})
	}
}

// subnetAddrs returns every address on eth0 in CIDR form.
func subnetAddrs(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		out = append(out, a.IPNet.String())
	}
	return out
}

func hasAll(have []string, want ...string) bool {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

// The journal directory is created on the first Up.
func TestKernelJournalDirCreated(t *testing.T) {
	ns, _ := fixture(t)
	journal := filepath.Join(t.TempDir(), "a", "b", "vips.json")
	m := vip.New(vip.Config{Interface: "eth0", Journal: journal, Announce: announce.Options{Burst: -1, Refresh: time.Hour}}, logTo(&bytes.Buffer{}))
	start(t, m)
	a := netip.MustParseAddr("198.18.0.10")
	if err := netnstest.InNS(ns, func() error { return m.Up(a, time.Time{}) }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]entry{{"eth0", a}}, readJournal(t, journal), cmpAddr); diff != "" {
		t.Errorf("journal (-want +got):\n%s", diff)
	}
	if err := netnstest.InNS(ns, func() error { return m.Down(a) }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(journal + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary journal left behind: stat = %v", err)
	}
}

// Issue 8 lifecycle: Up works before Run is called (it used to fail with
// "not running"); Run then owns the announcer and stops it with its ctx.
func TestKernelUpBeforeRun(t *testing.T) {
	ns, h := fixture(t)
	sent := &sentLog{}
	m := vip.New(vip.Config{Interface: "eth0", Announce: announce.Options{Burst: -1, Refresh: time.Hour, OnSent: sent.onSent}}, logTo(&bytes.Buffer{}))
	a := netip.MustParseAddr("198.18.0.10")
	if err := netnstest.InNS(ns, func() error { return m.Up(a, time.Time{}) }); err != nil {
		t.Fatalf("Up before Run: %v", err)
	}
	if diff := cmp.Diff([]netip.Addr{a}, hostAddrs(t, h), cmpAddr); diff != "" {
		t.Errorf("addresses on eth0 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]netip.Addr{a}, sent.take(), cmpAddr); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}
	stop := start(t, m)
	stop() // returns only once the announcer started by Up has stopped
	if err := netnstest.InNS(ns, func() error { return m.Down(a) }); err != nil {
		t.Fatal(err)
	}
}

// An Up that cannot bind leaves nothing behind: no address, no journal.
func TestKernelUpFails(t *testing.T) {
	tests := []struct {
		name  string
		iface string
		addr  string
	}{
		{"no such interface", "vgl-ut-gone0", "198.18.0.10"},
		{"auto, no on-link subnet", "auto", "198.19.7.10"},
		{"auto, no on-link IPv6 subnet", "", "fd00:1ac::10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, h := fixture(t)
			journal := filepath.Join(t.TempDir(), "vips.json")
			m := vip.New(vip.Config{Interface: tt.iface, Journal: journal, Announce: announce.Options{Burst: -1, Refresh: time.Hour}}, logTo(&bytes.Buffer{}))
			start(t, m)
			if err := netnstest.InNS(ns, func() error { return m.Up(netip.MustParseAddr(tt.addr), time.Time{}) }); err == nil {
				t.Fatal("Up succeeded, want an error")
			}
			if diff := cmp.Diff([]netip.Addr{}, m.Bound(), cmpAddr); diff != "" {
				t.Errorf("Bound (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]netip.Addr(nil), hostAddrs(t, h), cmpAddr); diff != "" {
				t.Errorf("addresses on eth0 (-want +got):\n%s", diff)
			}
			if _, err := os.Stat(journal); !os.IsNotExist(err) {
				t.Errorf("journal: stat = %v, want no file", err)
			}
		})
	}
}

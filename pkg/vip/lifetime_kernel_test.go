package vip_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/announce"
	"github.com/vigil-lb/vigil/pkg/netif"
	"github.com/vigil-lb/vigil/pkg/vip"
)

var (
	lv4 = netip.MustParseAddr("198.18.0.10")
	lv6 = netip.MustParseAddr("fd00:1ab::10")
)

// lifetime returns the valid lifetime (seconds) of a on eth0, -1 for a
// permanent address; found is false if a is not there.
func lifetime(t *testing.T, h *netlink.Handle, a netip.Addr) (valid int, found bool) {
	t.Helper()
	return lifetimeOn(t, h, "eth0", a)
}

// lifetimeOn is lifetime on link name.
func lifetimeOn(t *testing.T, h *netlink.Handle, name string, a netip.Addr) (valid int, found bool) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, na := range list {
		if ip, ok := netip.AddrFromSlice(na.IP); ok && ip.Unmap() == a {
			if na.Flags&unix.IFA_F_PERMANENT != 0 {
				return -1, true
			}
			return na.ValidLft, true
		}
	}
	return 0, false
}

// lifetimeManager is a running Manager on eth0 of a fixture namespace with a
// fake clock; announcements go to sent.
type lifetimeManager struct {
	ns      string
	h       *netlink.Handle
	clk     *clocktest.Fake
	m       *vip.Manager
	sent    *sentLog
	journal string
}

func newLifetimeManager(t *testing.T, refresh time.Duration) *lifetimeManager {
	t.Helper()
	ns, h := fixture(t)
	lm := &lifetimeManager{ns: ns, h: h, clk: clocktest.New(time.Now()), sent: &sentLog{}, journal: filepath.Join(t.TempDir(), "vips.json")}
	lm.m = vip.New(vip.Config{
		Interface: "eth0", Journal: lm.journal, Clock: lm.clk,
		Announce: announce.Options{Burst: -1, Refresh: refresh, OnSent: lm.sent.onSent},
	}, logTo(&bytes.Buffer{}))
	start(t, lm.m)
	return lm
}

// up calls Up(a, now+d) in the namespace.
func (lm *lifetimeManager) up(a netip.Addr, d time.Duration) error {
	return netnstest.InNS(lm.ns, func() error { return lm.m.Up(a, lm.clk.Now().Add(d)) })
}

// bound calls Bound in the namespace (it may remove lapsed addresses).
func (lm *lifetimeManager) bound(t *testing.T) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	if err := netnstest.InNS(lm.ns, func() error { out = lm.m.Bound(); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// Up binds with a lifetime of floor(until - now - LapseSlack - 200ms)
// and announces once; a refresh moves the lifetime in place and sends
// nothing.
func TestKernelUpLifetimeRefresh(t *testing.T) {
	lm := newLifetimeManager(t, time.Hour)
	for _, a := range []netip.Addr{lv4, lv6} {
		if err := lm.up(a, 10*time.Second); err != nil {
			t.Fatalf("Up(%s): %v", a, err)
		}
		// 10s - 1.5s slack - 0.2s budget = 8.3s, rounded down.
		if valid, found := lifetime(t, lm.h, a); !found || valid < 7 || valid > 8 {
			t.Errorf("%s after Up: found %t, valid %ds; want 8s", a, found, valid)
		}
	}
	if diff := cmp.Diff([]netip.Addr{lv4, lv6}, lm.sent.take(), cmpAddr); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}
	lm.clk.Step(3 * time.Second)
	for _, a := range []netip.Addr{lv4, lv6, lv4} {
		if err := lm.up(a, 20*time.Second); err != nil {
			t.Fatalf("refresh Up(%s): %v", a, err)
		}
		if valid, found := lifetime(t, lm.h, a); !found || valid < 17 || valid > 18 {
			t.Errorf("%s after the refresh: found %t, valid %ds; want 18s", a, found, valid)
		}
	}
	if got := lm.sent.take(); len(got) != 0 {
		t.Errorf("a refresh announced %v, want nothing", got)
	}
	if diff := cmp.Diff([]netip.Addr{lv4, lv6}, lm.bound(t), cmpAddr); diff != "" {
		t.Errorf("Bound (-want +got):\n%s", diff)
	}
	// Up (permanent) of a VIP bound with a lifetime makes it permanent.
	if err := netnstest.InNS(lm.ns, func() error { return lm.m.Up(lv4, time.Time{}) }); err != nil {
		t.Fatal(err)
	}
	if valid, found := lifetime(t, lm.h, lv4); !found || valid != -1 {
		t.Errorf("after Up: found %t, valid %ds; want permanent", found, valid)
	}
}

// Refresh is Up for many addresses with one read of the interface: bound
// ones get their new lifetime in place and are not announced again, a new
// one is bound and announced, and a too-late one keeps its lifetime and is
// the only error.
func TestKernelRefresh(t *testing.T) {
	lm := newLifetimeManager(t, time.Hour)
	for _, a := range []netip.Addr{lv4, lv6} {
		if err := lm.up(a, 10*time.Second); err != nil {
			t.Fatalf("Up(%s): %v", a, err)
		}
	}
	lm.sent.take()
	lm.clk.Step(3 * time.Second)
	fresh := netip.MustParseAddr("198.18.0.11")
	late := netip.MustParseAddr("198.18.0.12")
	var errs map[netip.Addr]error
	if err := netnstest.InNS(lm.ns, func() error {
		now := lm.clk.Now()
		errs = lm.m.Refresh(map[netip.Addr]time.Time{
			lv4: now.Add(20 * time.Second), lv6: now.Add(20 * time.Second),
			fresh: now.Add(20 * time.Second), late: now.Add(time.Second),
		})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || !errors.Is(errs[late], vip.ErrTooLate) {
		t.Errorf("Refresh errors = %v, want only %s: ErrTooLate", errs, late)
	}
	for _, a := range []netip.Addr{lv4, lv6, fresh} {
		// 20s - 1.5s slack - 0.2s budget = 18.3s, rounded down.
		if valid, found := lifetime(t, lm.h, a); !found || valid < 17 || valid > 18 {
			t.Errorf("%s after Refresh: found %t, valid %ds; want 18s", a, found, valid)
		}
	}
	if _, found := lifetime(t, lm.h, late); found {
		t.Errorf("%s is on eth0 after a too-late Refresh", late)
	}
	if diff := cmp.Diff([]netip.Addr{fresh}, lm.sent.take(), cmpAddr); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]netip.Addr{lv4, fresh, lv6}, lm.bound(t), cmpAddr); diff != "" {
		t.Errorf("Bound (-want +got):\n%s", diff)
	}
}

// Refresh binds an address still on its interface again only when that
// ends its lifetime later: by a second or more, or by anything once no
// more than two seconds of it are left. Each step sets the kernel's
// lifetime to 100s behind the Manager's back first, so a bind shows as
// the lifetime it gives.
func TestKernelRefreshBindsOnlyWhatGains(t *testing.T) {
	lm := newLifetimeManager(t, time.Hour)
	if err := lm.up(lv4, 10*time.Second); err != nil { // ends at +8s
		t.Fatal(err)
	}
	start := lm.clk.Now()
	for _, step := range []struct {
		name     string
		at       time.Duration // on the Manager's clock, from Up
		until    time.Duration // from Up
		wantLeft int           // kernel's valid lifetime after Refresh
	}{
		{"gains nothing", 0, 10500 * time.Millisecond, 100},                                     // ends at +8s again
		{"gains a second", 0, 11 * time.Second, 9},                                              // +9s
		{"gains a fraction, 2.5s left", 6500 * time.Millisecond, 11300 * time.Millisecond, 100}, // +9.5s
		{"gains a fraction, 1.8s left", 7200 * time.Millisecond, 11200 * time.Millisecond, 2},   // +9.2s
	} {
		setLifetime(t, lm.h, lv4, 100)
		lm.clk.Set(start.Add(step.at))
		var errs map[netip.Addr]error
		if err := netnstest.InNS(lm.ns, func() error {
			errs = lm.m.Refresh(map[netip.Addr]time.Time{lv4: start.Add(step.until)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if valid, found := lifetime(t, lm.h, lv4); len(errs) != 0 || !found || valid < step.wantLeft-1 || valid > step.wantLeft {
			t.Errorf("%s: errors %v, found %t, valid %ds; want %ds", step.name, errs, found, valid, step.wantLeft)
		}
	}
	if got := lm.sent.take(); len(got) != 1 {
		t.Errorf("announcements %v, want only Up's", got)
	}
}

// setLifetime gives a on eth0 a lifetime of secs behind the Manager's back.
func setLifetime(t *testing.T, h *netlink.Handle, a netip.Addr, secs int) {
	t.Helper()
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	na := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}, ValidLft: secs, PreferedLft: secs}
	if err := h.AddrReplace(l, na); err != nil {
		t.Fatal(err)
	}
}

// An Up that would gain a bound address less than a second of lifetime
// reads and changes nothing (sync calls Up for every held address, so it
// must not read the interface each time): an address removed behind the
// Manager's back stays removed until Refresh, which puts it back and
// announces it. A longer term binds at once.
func TestKernelUpWithinTermLeavesItToRefresh(t *testing.T) {
	lm := newLifetimeManager(t, time.Hour)
	if err := lm.up(lv4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	lm.sent.take()
	l, err := lm.h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := lm.h.AddrDel(l, &netlink.Addr{IPNet: &net.IPNet{IP: lv4.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	until := lm.clk.Now().Add(10 * time.Second)
	if err := netnstest.InNS(lm.ns, func() error { return lm.m.Up(lv4, until) }); err != nil {
		t.Fatal(err)
	}
	if _, found := lifetime(t, lm.h, lv4); found {
		t.Fatalf("Up within the same term read the interface and put %s back", lv4)
	}
	var errs map[netip.Addr]error
	if err := netnstest.InNS(lm.ns, func() error { errs = lm.m.Refresh(map[netip.Addr]time.Time{lv4: until}); return nil }); err != nil {
		t.Fatal(err)
	}
	if valid, found := lifetime(t, lm.h, lv4); len(errs) != 0 || !found || valid < 7 || valid > 8 {
		t.Errorf("after Refresh: errors %v, found %t, valid %ds; want it back with 8s", errs, found, valid)
	}
	if diff := cmp.Diff([]netip.Addr{lv4}, lm.sent.take(), cmpAddr); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}
	if err := lm.up(lv4, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if valid, found := lifetime(t, lm.h, lv4); !found || valid < 17 || valid > 18 {
		t.Errorf("after Up with a longer term: found %t, valid %ds; want 18s", found, valid)
	}
}

// Too close to until: nothing is bound, and a bound VIP is not refreshed:
// it keeps its earlier lifetime and lapses by itself.
func TestKernelUpLifetimeTooLate(t *testing.T) {
	lm := newLifetimeManager(t, time.Hour)
	if err := lm.up(lv4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// 2.6s - 1.7s = 0.9s: under a second.
	if err := lm.up(lv4, 2600*time.Millisecond); !errors.Is(err, vip.ErrTooLate) {
		t.Errorf("Up 2.6s ahead of a bound VIP: err = %v, want ErrTooLate", err)
	}
	if err := lm.up(lv6, time.Second); !errors.Is(err, vip.ErrTooLate) {
		t.Errorf("Up 1s ahead: err = %v, want ErrTooLate", err)
	}
	if err := lm.up(lv6, -time.Second); !errors.Is(err, vip.ErrTooLate) {
		t.Errorf("Up in the past: err = %v, want ErrTooLate", err)
	}
	// The bound VIP keeps the lifetime of its last refresh (it lapses by
	// the earlier until); the unbound one was never bound.
	if lt, found := lifetime(t, lm.h, lv4); !found || lt > 8 {
		t.Errorf("%s after a too-late refresh: found %t, lifetime %v, want the earlier one (<= 8s)", lv4, found, lt)
	}
	if _, found := lifetime(t, lm.h, lv6); found {
		t.Errorf("%s is on eth0 after a too-late Up", lv6)
	}
	if diff := cmp.Diff([]netip.Addr{lv4}, lm.bound(t), cmpAddr); diff != "" {
		t.Errorf("Bound (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]netip.Addr{lv4}, lm.sent.take(), cmpAddr); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}
}

// The agent is stopped (SIGSTOP) past its VIP's lifetime and resumed: the
// announcer's refresh timer fires at once and sends nothing, Bound no
// longer lists the VIP (and removes it, ahead of a late kernel), a stale
// until is refused, and only a fresh one binds and announces again.
func TestKernelUpLifetimeResumedAfterLapse(t *testing.T) {
	lm := newLifetimeManager(t, 2*time.Second)
	if err := lm.up(lv4, 10*time.Second); err != nil { // lifetime 8s
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Addr{lv4}, lm.sent.take(), cmpAddr); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}
	// Resumed 30s later (fake time; the real kernel lifetime still runs).
	lm.clk.Step(30 * time.Second)
	if !lm.clk.Await(10*time.Second, func() bool {
		return !slices.ContainsFunc(lm.clk.Timers(), func(s clocktest.TimerState) bool { return s.State != clocktest.Stopped })
	}) {
		t.Fatalf("the announcer did not settle: timers %v", lm.clk.Timers())
	}
	if got := lm.sent.take(); len(got) != 0 {
		t.Errorf("announced %v after the lifetime ended, want nothing", got)
	}
	if diff := cmp.Diff([]netip.Addr{}, lm.bound(t), cmpAddr); diff != "" {
		t.Errorf("Bound after the lifetime ended (-want +got):\n%s", diff)
	}
	if _, found := lifetime(t, lm.h, lv4); found {
		t.Error("the lapsed VIP is still on eth0 after Bound")
	}
	if err := lm.up(lv4, time.Second); !errors.Is(err, vip.ErrTooLate) {
		t.Errorf("Up with a stale until: err = %v, want ErrTooLate", err)
	}
	if err := lm.up(lv4, 10*time.Second); err != nil {
		t.Fatalf("Up re-confirmed: %v", err)
	}
	if diff := cmp.Diff([]netip.Addr{lv4}, lm.sent.take(), cmpAddr); diff != "" {
		t.Errorf("announcements after re-confirmation (-want +got):\n%s", diff)
	}
}

// A lifetime is never put on the node's own address.
func TestKernelUpLifetimeNodeAddress(t *testing.T) {
	lm := newLifetimeManager(t, time.Hour)
	own := netip.MustParseAddr("198.18.0.1")
	if err := lm.up(own, 10*time.Second); !errors.Is(err, netif.ErrNotHostPrefix) {
		t.Errorf("Up of the node's address: err = %v, want ErrNotHostPrefix", err)
	}
	if valid, found := lifetime(t, lm.h, own); !found || valid != -1 {
		t.Errorf("node address: found %t, valid %ds; want it permanent", found, valid)
	}
	if diff := cmp.Diff([]netip.Addr{}, lm.bound(t), cmpAddr); diff != "" {
		t.Errorf("Bound (-want +got):\n%s", diff)
	}
	if got := lm.sent.take(); len(got) != 0 {
		t.Errorf("announced %v, want nothing", got)
	}
}

// timedLog records when each announcement was sent (real clock).
type timedLog struct {
	mu   sync.Mutex
	last time.Time
	n    int
}

func (l *timedLog) onSent(netip.Addr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last, l.n = time.Now(), l.n+1
}

// With the real clock and kernel: the address leaves the interface by
// until, without the Manager doing anything, and the announcer, refreshing
// every 100ms, sends nothing after the lifetime ended. About 2s.
func TestKernelUpLifetimeLapses(t *testing.T) {
	ns, h := fixture(t)
	sent := &timedLog{}
	m := vip.New(vip.Config{
		Interface: "eth0",
		Announce:  announce.Options{Burst: -1, Refresh: 100 * time.Millisecond, OnSent: sent.onSent},
	}, logTo(&bytes.Buffer{}))
	start(t, m)
	begin := time.Now()
	until := begin.Add(netif.LapseSlack + 1500*time.Millisecond) // lifetime 1s
	if err := netnstest.InNS(ns, func() error { return m.Up(lv4, until) }); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(time.Second) // the lifetime ends before this
	if valid, found := lifetime(t, h, lv4); !found || valid != 1 {
		t.Fatalf("after Up: found %t, valid %ds; want 1s", found, valid)
	}
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		if _, found := lifetime(t, h, lv4); !found {
			break
		}
		if time.Since(begin) > 10*time.Second {
			t.Fatal("the address was not removed within 10s")
		}
		<-poll.C
	}
	gone := time.Now()
	t.Logf("removed %v after Up (lifetime 1s), %v before until", gone.Sub(begin), until.Sub(gone))
	if gone.After(until) {
		t.Errorf("the kernel removed the VIP %v after until", gone.Sub(until))
	}
	sent.mu.Lock()
	last, n := sent.last, sent.n
	sent.mu.Unlock()
	if n < 2 || !last.Before(end) {
		t.Errorf("%d announcements, the last %v after Up returned; want several, all within the 1s lifetime", n, last.Sub(end.Add(-time.Second)))
	}
}

// fakeDHCP always holds a lease for addr.
type fakeDHCP struct{ addr netip.Addr }

func (f fakeDHCP) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (f fakeDHCP) Addr() (netip.Addr, bool)      { return f.addr, true }
func (f fakeDHCP) Release() error                { return nil }
func (f fakeDHCP) Close() error                  { return nil }

// A DHCP address bound with DHCPParams.Until gets the same lifetime as Up
// gives, and is withdrawn when Until is too close.
func TestKernelEnsureDHCPUntil(t *testing.T) {
	ns, h := fixture(t)
	clk := clocktest.New(time.Now())
	leased := netip.MustParseAddr("198.18.0.50")
	m := vip.New(vip.Config{
		Interface: "eth0", Clock: clk,
		Announce: announce.Options{Burst: -1, Refresh: time.Hour},
		NewDHCP: func(vip.DHCPClientConfig) (vip.DHCPClient, error) {
			return fakeDHCP{leased}, nil
		},
	}, logTo(&bytes.Buffer{}))
	start(t, m)
	const key = "default/dhcp"
	mac, _ := net.ParseMAC("02:00:00:00:00:50")
	ensure := func(d time.Duration) error {
		return netnstest.InNS(ns, func() error {
			_, err := m.EnsureDHCP(key, vip.DHCPParams{IPv4: true, MAC: mac, Until: clk.Now().Add(d)})
			return err
		})
	}
	t.Cleanup(func() {
		if err := netnstest.InNS(ns, func() error { return m.StopDHCP(key) }); err != nil {
			t.Errorf("StopDHCP: %v", err)
		}
	})
	if err := ensure(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if valid, found := lifetimeOn(t, h, vip.MacvlanName(key), leased); !found || valid < 7 || valid > 8 {
		t.Errorf("leased address: found %t, valid %ds; want 8s", found, valid)
	}
	if err := ensure(time.Second); !errors.Is(err, vip.ErrTooLate) {
		t.Errorf("EnsureDHCP 1s ahead: err = %v, want ErrTooLate", err)
	}
	// Not extended: it keeps the earlier lifetime and lapses by itself.
	if valid, found := lifetimeOn(t, h, vip.MacvlanName(key), leased); !found || valid > 8 {
		t.Errorf("leased address after a too-late EnsureDHCP: found %t, valid %ds; want the earlier lifetime (<= 8s)", found, valid)
	}
}

// Found by the fault campaign (issue 14): the agent's refresher extends a
// leased address with Up, which bound it on Config.Interface instead: the
// DHCP address moved from its macvlan to eth0 (answering with the node's
// MAC). Up extends it in place, on the macvlan.
func TestKernelUpRefreshesDHCPAddressInPlace(t *testing.T) {
	ns, h := fixture(t)
	clk := clocktest.New(time.Now())
	leased := netip.MustParseAddr("198.18.0.51")
	m := vip.New(vip.Config{
		Interface: "eth0", Clock: clk,
		Announce: announce.Options{Burst: -1, Refresh: time.Hour},
		NewDHCP: func(vip.DHCPClientConfig) (vip.DHCPClient, error) {
			return fakeDHCP{leased}, nil
		},
	}, logTo(&bytes.Buffer{}))
	start(t, m)
	const key = "default/dhcp-refresh"
	mac, _ := net.ParseMAC("02:00:00:00:00:51")
	t.Cleanup(func() {
		if err := netnstest.InNS(ns, func() error { return m.StopDHCP(key) }); err != nil {
			t.Errorf("StopDHCP: %v", err)
		}
	})
	if err := netnstest.InNS(ns, func() error {
		if _, err := m.EnsureDHCP(key, vip.DHCPParams{IPv4: true, MAC: mac, Until: clk.Now().Add(10 * time.Second)}); err != nil {
			return err
		}
		return m.Up(leased, clk.Now().Add(20*time.Second))
	}); err != nil {
		t.Fatal(err)
	}
	if valid, found := lifetimeOn(t, h, vip.MacvlanName(key), leased); !found || valid < 17 || valid > 18 {
		t.Errorf("leased address on the macvlan after Up: found %t, valid %ds; want 18s", found, valid)
	}
	if _, found := lifetimeOn(t, h, "eth0", leased); found {
		t.Errorf("Up moved the leased address %s to eth0", leased)
	}
}

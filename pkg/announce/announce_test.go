package announce

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const ms = time.Millisecond

var cmpAddr = cmpopts.EquateComparable(netip.Addr{})

// harness is an Announcer on fake Conns and a fake clock.
type harness struct {
	t      *testing.T
	clk    *fakeClock
	v4, v6 *fakeConn
	a      *Announcer

	mu     sync.Mutex
	onSent []sentReport
}

// sentReport is one call of Options.OnSent.
type sentReport struct {
	At   time.Duration
	Addr netip.Addr
	Err  bool
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	clk := newFakeClock()
	h := &harness{t: t, clk: clk, v4: &fakeConn{clk: clk}, v6: &fakeConn{clk: clk}}
	opts.OnSent = func(addr netip.Addr, err error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.onSent = append(h.onSent, sentReport{At: clk.Since(), Addr: addr, Err: err != nil})
	}
	h.a = newAnnouncer(&net.Interface{Name: "eth0"}, h.v4, h.v6, opts, clk)
	return h
}

// start runs the Announcer until the test ends.
func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.a.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
}

func (h *harness) add(s string) {
	h.t.Helper()
	if err := h.a.Add(netip.MustParseAddr(s)); err != nil {
		h.t.Fatalf("Add(%s): %v", s, err)
	}
}

func (h *harness) remove(s string) { h.a.Remove(netip.MustParseAddr(s)) }

// tick waits until Run has armed its timer for start+at, then moves the
// clock there, so the announcements due then are sent.
func (h *harness) tick(at time.Duration) {
	h.t.Helper()
	h.clk.waitArmed(h.t, at)
	h.clk.AdvanceTo(at)
}

// sends returns all announcements of both Conns, in time order.
func (h *harness) sends() []fakeSend {
	all := append(h.v4.Sends(), h.v6.Sends()...)
	slices.SortStableFunc(all, func(a, b fakeSend) int {
		return cmp.Or(cmp.Compare(a.At, b.At), a.Addr.Compare(b.Addr))
	})
	return all
}

func send(at time.Duration, addr string) fakeSend {
	return fakeSend{At: at, Addr: netip.MustParseAddr(addr)}
}

func TestAnnouncerSchedule(t *testing.T) {
	const a4, b6 = "198.18.0.10", "fd00:1ab::10"
	tests := []struct {
		name   string
		opts   Options
		script func(h *harness)
		want   []fakeSend
	}{
		{
			name: "defaults: immediate send, burst of 3 at 250ms, refresh every 3s",
			script: func(h *harness) {
				h.start()
				h.add(a4)
				for _, at := range []time.Duration{250 * ms, 500 * ms, 750 * ms, 3750 * ms, 6750 * ms} {
					h.tick(at)
				}
				h.clk.waitArmed(h.t, 9750*ms)
			},
			want: []fakeSend{
				send(0, a4), send(250*ms, a4), send(500*ms, a4), send(750*ms, a4),
				send(3750*ms, a4), send(6750*ms, a4),
			},
		},
		{
			name: "custom burst and refresh",
			opts: Options{Burst: 2, BurstInterval: 100 * ms, Refresh: time.Second},
			script: func(h *harness) {
				h.start()
				h.add(b6)
				for _, at := range []time.Duration{100 * ms, 200 * ms, 1200 * ms, 2200 * ms} {
					h.tick(at)
				}
				h.clk.waitArmed(h.t, 3200*ms)
			},
			want: []fakeSend{
				send(0, b6), send(100*ms, b6), send(200*ms, b6), send(1200*ms, b6), send(2200*ms, b6),
			},
		},
		{
			name: "negative burst: refresh only",
			opts: Options{Burst: -1, Refresh: time.Second},
			script: func(h *harness) {
				h.start()
				h.add(a4)
				h.tick(time.Second)
				h.tick(2 * time.Second)
				h.clk.waitArmed(h.t, 3*time.Second)
			},
			want: []fakeSend{send(0, a4), send(time.Second, a4), send(2*time.Second, a4)},
		},
		{
			name: "the earliest due address drives the timer",
			opts: Options{Burst: 1, Refresh: time.Second},
			script: func(h *harness) {
				h.start()
				h.add(a4) // due 250ms
				h.clk.waitArmed(h.t, 250*ms)
				h.clk.AdvanceTo(100 * ms)
				h.add(b6) // due 350ms
				for _, at := range []time.Duration{250 * ms, 350 * ms, 1250 * ms, 1350 * ms} {
					h.tick(at)
				}
				h.clk.waitArmed(h.t, 2250*ms)
			},
			want: []fakeSend{
				send(0, a4), send(100*ms, b6), send(250*ms, a4), send(350*ms, b6),
				send(1250*ms, a4), send(1350*ms, b6),
			},
		},
		{
			name: "remove stops sends",
			script: func(h *harness) {
				h.start()
				h.add(a4)
				h.add(b6)
				h.tick(250 * ms)
				h.clk.waitArmed(h.t, 500*ms)
				h.remove(a4)
				h.tick(500 * ms)
				h.clk.waitArmed(h.t, 750*ms)
				h.remove(b6)
				h.clk.waitStopped(h.t)
				h.clk.AdvanceTo(time.Minute)
			},
			want: []fakeSend{
				send(0, a4), send(0, b6), send(250*ms, a4), send(250*ms, b6), send(500*ms, b6),
			},
		},
		{
			name: "re-add sends at once and restarts the burst",
			script: func(h *harness) {
				h.start()
				h.add(a4)
				for _, at := range []time.Duration{250 * ms, 500 * ms, 750 * ms} {
					h.tick(at)
				}
				h.clk.waitArmed(h.t, 3750*ms) // burst over, waiting to refresh
				h.clk.AdvanceTo(time.Second)
				h.add(a4)
				for _, at := range []time.Duration{1250 * ms, 1500 * ms, 1750 * ms, 4750 * ms} {
					h.tick(at)
				}
				h.clk.waitArmed(h.t, 7750*ms)
			},
			want: []fakeSend{
				send(0, a4), send(250*ms, a4), send(500*ms, a4), send(750*ms, a4),
				send(time.Second, a4), send(1250*ms, a4), send(1500*ms, a4), send(1750*ms, a4),
				send(4750*ms, a4),
			},
		},
		{
			name: "add before Run sends at once; Run picks up the schedule",
			script: func(h *harness) {
				h.add(a4)
				h.start()
				h.tick(250 * ms)
				h.clk.waitArmed(h.t, 500*ms)
			},
			want: []fakeSend{send(0, a4), send(250*ms, a4)},
		},
		{
			name: "ipv4-mapped address is announced as ipv4",
			script: func(h *harness) {
				h.start()
				h.add("::ffff:198.18.0.10")
				h.tick(250 * ms)
				h.clk.waitArmed(h.t, 500*ms)
				h.remove("::ffff:198.18.0.10")
				h.clk.waitStopped(h.t)
			},
			want: []fakeSend{send(0, a4), send(250*ms, a4)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.opts)
			tt.script(h)
			if diff := gocmp.Diff(tt.want, h.sends(), cmpAddr); diff != "" {
				t.Errorf("announcements mismatch (-want +got):\n%s", diff)
			}
			// OnSent saw exactly the same sends, none failed.
			var reported []fakeSend
			h.mu.Lock()
			for _, r := range h.onSent {
				if r.Err {
					t.Errorf("OnSent(%v) reported an error", r.Addr)
				}
				reported = append(reported, fakeSend{At: r.At, Addr: r.Addr})
			}
			h.mu.Unlock()
			slices.SortStableFunc(reported, func(a, b fakeSend) int {
				return cmp.Or(cmp.Compare(a.At, b.At), a.Addr.Compare(b.Addr))
			})
			if diff := gocmp.Diff(tt.want, reported, cmpAddr); diff != "" {
				t.Errorf("OnSent reports mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddRejects(t *testing.T) {
	tests := []struct {
		name    string
		noV4    bool
		noV6    bool
		v6Err   error
		addr    netip.Addr
		wantErr string
	}{
		{name: "zero", addr: netip.Addr{}, wantErr: "invalid"},
		{name: "unspecified v4", addr: netip.IPv4Unspecified(), wantErr: "unspecified"},
		{name: "unspecified v6", addr: netip.IPv6Unspecified(), wantErr: "unspecified"},
		{name: "mapped unspecified", addr: netip.MustParseAddr("::ffff:0.0.0.0"), wantErr: "unspecified"},
		{name: "multicast", addr: netip.MustParseAddr("ff02::1"), wantErr: "multicast"},
		{name: "zoned", addr: netip.MustParseAddr("fe80::1%eth0"), wantErr: "zoned"},
		{name: "no v4 conn", noV4: true, addr: netip.MustParseAddr("198.18.0.10"), wantErr: "no IPv4 (ARP) announcer"},
		{name: "no v6 conn", noV6: true, addr: netip.MustParseAddr("fd00:1ab::10"), wantErr: "no IPv6 (NDP) announcer"},
		{
			name:    "no v6 conn, with the reason from Open",
			noV6:    true,
			v6Err:   errors.New("no link-local address"),
			addr:    netip.MustParseAddr("fd00:1ab::10"),
			wantErr: "no IPv6 (NDP) announcer: no link-local address",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			v4, v6 := &fakeConn{clk: clk}, &fakeConn{clk: clk}
			var c4, c6 Conn = v4, v6
			if tt.noV4 {
				c4 = nil
			}
			if tt.noV6 {
				c6 = nil
			}
			a := newAnnouncer(&net.Interface{Name: "eth0"}, c4, c6, Options{}, clk)
			a.v6Err = tt.v6Err
			err := a.Add(tt.addr)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Add(%v) = %v, want an error containing %q", tt.addr, err, tt.wantErr)
			}
			if tt.v6Err != nil && !errors.Is(err, tt.v6Err) {
				t.Errorf("Add(%v) = %v, does not wrap %v", tt.addr, err, tt.v6Err)
			}
			if got := a.Addrs(); len(got) != 0 {
				t.Errorf("Addrs() = %v after a rejected Add, want none", got)
			}
			if got := append(v4.Sends(), v6.Sends()...); len(got) != 0 {
				t.Errorf("sent %v for a rejected Add", got)
			}
		})
	}
}

func TestAddSendFailure(t *testing.T) {
	h := newHarness(t, Options{})
	h.v4.fail = true
	addr := netip.MustParseAddr("198.18.0.10")
	if err := h.a.Add(addr); err == nil || !strings.Contains(err.Error(), "fake send failure") {
		t.Errorf("Add = %v, want the send error", err)
	}
	// Still scheduled, so the burst retries.
	if diff := gocmp.Diff([]netip.Addr{addr}, h.a.Addrs(), cmpAddr); diff != "" {
		t.Errorf("Addrs() mismatch (-want +got):\n%s", diff)
	}
	h.start()
	h.tick(250 * ms)
	h.clk.waitArmed(t, 500*ms)
	h.mu.Lock()
	got := slices.Clone(h.onSent)
	h.mu.Unlock()
	want := []sentReport{{At: 0, Addr: addr, Err: true}, {At: 250 * ms, Addr: addr, Err: true}}
	if diff := gocmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("OnSent reports mismatch (-want +got):\n%s", diff)
	}
}

func TestAddrsSorted(t *testing.T) {
	h := newHarness(t, Options{})
	for _, s := range []string{"fd00:1ab::2", "198.18.0.20", "fd00:1ab::1", "198.18.0.3", "198.18.0.20"} {
		h.add(s)
	}
	h.remove("fd00:1ab::2")
	h.remove("198.18.0.99") // not there: no-op
	want := []netip.Addr{
		netip.MustParseAddr("198.18.0.3"),
		netip.MustParseAddr("198.18.0.20"),
		netip.MustParseAddr("fd00:1ab::1"),
	}
	if diff := gocmp.Diff(want, h.a.Addrs(), cmpAddr); diff != "" {
		t.Errorf("Addrs() mismatch (-want +got):\n%s", diff)
	}
}

func TestRunStops(t *testing.T) {
	h := newHarness(t, Options{})
	h.add("198.18.0.10")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.a.Run(ctx) }()
	h.clk.waitArmed(t, 250*ms)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}

	type state struct {
		ClosedV4, ClosedV6 int
		Addrs              []netip.Addr
		AddErr, RunErr     bool
	}
	got := state{ClosedV4: h.v4.Closed(), ClosedV6: h.v6.Closed(), Addrs: h.a.Addrs()}
	got.AddErr = h.a.Add(netip.MustParseAddr("198.18.0.11")) != nil
	got.RunErr = h.a.Run(context.Background()) != nil
	want := state{ClosedV4: 1, ClosedV6: 1, AddErr: true, RunErr: true}
	if diff := gocmp.Diff(want, got, cmpAddr, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("after Run returned (-want +got):\n%s", diff)
	}
	if diff := gocmp.Diff([]fakeSend{send(0, "198.18.0.10")}, h.sends(), cmpAddr); diff != "" {
		t.Errorf("announcements mismatch (-want +got):\n%s", diff)
	}
}

func TestRunWithoutConns(t *testing.T) {
	a := newAnnouncer(nil, nil, nil, Options{}, newFakeClock())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Options
		want Options
	}{
		{
			name: "zero",
			want: Options{Burst: 3, BurstInterval: 250 * ms, Refresh: 3 * time.Second},
		},
		{
			name: "set",
			in:   Options{Burst: 5, BurstInterval: 100 * ms, Refresh: time.Second},
			want: Options{Burst: 5, BurstInterval: 100 * ms, Refresh: time.Second},
		},
		{
			name: "negative",
			in:   Options{Burst: -1, BurstInterval: -ms, Refresh: -ms},
			want: Options{Burst: 0, BurstInterval: 250 * ms, Refresh: 3 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := gocmp.Diff(tt.want, tt.in.withDefaults(), cmpopts.IgnoreFields(Options{}, "OnSent")); diff != "" {
				t.Errorf("withDefaults mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

package announce

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
)

// An address added with an end is never announced at or after it: not by
// its schedule, not when the clock jumps past the end (a process stopped
// with SIGSTOP and resumed: its timer fires at once), and Extend moves the
// end without sending.
func TestAnnouncerUntil(t *testing.T) {
	const a4, b6 = "198.18.0.10", "fd00:1ab::10"
	at := func(h *harness, d time.Duration) time.Time { return clockStart.Add(d) }
	tests := []struct {
		name   string
		script func(h *harness)
		want   []fakeSend
	}{
		{
			name: "dropped at its end, before the refresh due after it",
			script: func(h *harness) {
				h.start()
				h.addUntil(a4, at(h, 2*time.Second))
				h.add(b6)
				for _, d := range []time.Duration{250 * ms, 500 * ms, 750 * ms} {
					h.tick(d)
				}
				h.clk.waitArmed(h.t, 3750*ms)
				h.clk.AdvanceTo(2 * time.Second)
				h.wantAddrs(b6)
				h.tick(3750 * ms)
				h.clk.waitArmed(h.t, 6750*ms)
			},
			want: []fakeSend{
				send(0, a4), send(0, b6), send(250*ms, a4), send(250*ms, b6), send(500*ms, a4), send(500*ms, b6),
				send(750*ms, a4), send(750*ms, b6), send(3750*ms, b6),
			},
		},
		{
			name: "stopped past its end and resumed: the timer fires, nothing is sent",
			script: func(h *harness) {
				h.start()
				h.addUntil(a4, at(h, 4*time.Second))
				for _, d := range []time.Duration{250 * ms, 500 * ms, 750 * ms} {
					h.tick(d)
				}
				h.clk.waitArmed(h.t, 3750*ms)
				h.clk.AdvanceTo(30 * time.Second) // resumed long after
				h.clk.waitStopped(h.t)
				h.wantAddrs()
			},
			want: []fakeSend{send(0, a4), send(250*ms, a4), send(500*ms, a4), send(750*ms, a4)},
		},
		{
			name: "Extend moves the end without sending; after the end it fails",
			script: func(h *harness) {
				h.start()
				h.addUntil(a4, at(h, 2*time.Second))
				for _, d := range []time.Duration{250 * ms, 500 * ms, 750 * ms} {
					h.tick(d)
				}
				h.clk.waitArmed(h.t, 3750*ms)
				h.clk.AdvanceTo(time.Second)
				if !h.a.Extend(netip.MustParseAddr(a4), at(h, 5*time.Second)) {
					h.t.Error("Extend of an announced address = false")
				}
				h.tick(3750 * ms)
				h.clk.waitArmed(h.t, 6750*ms)
				h.clk.AdvanceTo(5 * time.Second)
				if h.a.Extend(netip.MustParseAddr(a4), at(h, 9*time.Second)) {
					h.t.Error("Extend after the end = true")
				}
				if h.a.Extend(netip.MustParseAddr(b6), at(h, 9*time.Second)) {
					h.t.Error("Extend of an address never added = true")
				}
				h.tick(6750 * ms)
				h.clk.waitStopped(h.t)
			},
			want: []fakeSend{send(0, a4), send(250*ms, a4), send(500*ms, a4), send(750*ms, a4), send(3750*ms, a4)},
		},
		{
			name: "Extend to a passed end stops at once; zero means no end",
			script: func(h *harness) {
				h.start()
				h.addUntil(a4, at(h, 2*time.Second))
				h.addUntil(b6, at(h, 2*time.Second))
				if h.a.Extend(netip.MustParseAddr(a4), at(h, 0)) {
					h.t.Error("Extend to a passed end = true")
				}
				if !h.a.Extend(netip.MustParseAddr(b6), time.Time{}) {
					h.t.Error("Extend to no end = false")
				}
				h.clk.waitArmed(h.t, 250*ms)
				h.clk.AdvanceTo(time.Minute)
				h.clk.waitArmed(h.t, time.Minute+250*ms)
				h.wantAddrs(b6)
			},
			want: []fakeSend{send(0, a4), send(0, b6), send(time.Minute, b6)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			tt.script(h)
			if diff := gocmp.Diff(tt.want, h.sends(), cmpAddr); diff != "" {
				t.Errorf("sends (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddUntilPassed(t *testing.T) {
	h := newHarness(t, Options{})
	h.start()
	h.clk.AdvanceTo(time.Second)
	err := h.a.AddUntil(netip.MustParseAddr("198.18.0.10"), clockStart.Add(time.Second))
	if !errors.Is(err, ErrExpired) {
		t.Errorf("AddUntil with a passed end: err = %v, want ErrExpired", err)
	}
	h.wantAddrs()
	if got := h.sends(); len(got) != 0 {
		t.Errorf("sent %v, want nothing", got)
	}
}

func (h *harness) addUntil(s string, until time.Time) {
	h.t.Helper()
	if err := h.a.AddUntil(netip.MustParseAddr(s), until); err != nil {
		h.t.Fatalf("AddUntil(%s, %v): %v", s, until, err)
	}
}

// wantAddrs checks Addrs.
func (h *harness) wantAddrs(want ...string) {
	h.t.Helper()
	var w []netip.Addr
	for _, s := range want {
		w = append(w, netip.MustParseAddr(s))
	}
	if diff := gocmp.Diff(w, h.a.Addrs(), cmpAddr); diff != "" {
		h.t.Errorf("Addrs (-want +got):\n%s", diff)
	}
}

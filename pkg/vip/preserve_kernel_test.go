package vip_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/announce"
	"github.com/vigil-lb/vigil/pkg/vip"
)

// silencer records every set it is given.
type silencer struct{ sets [][]netip.Addr }

func (s *silencer) Set(a []netip.Addr) error { s.sets = append(s.sets, a); return nil }

// vip_preserve_on_leadership_loss: Preserve keeps an IPv4 VIP bound
// (permanently), silenced and not Bound; Up takes it back and lifts the
// silence; Down removes it and lifts the silence after; IPv6 is removed.
func TestKernelPreserve(t *testing.T) {
	ns, h := fixture(t)
	sil := &silencer{}
	sent := &sentLog{}
	m := vip.New(vip.Config{Interface: "eth0", Silencer: sil, Announce: announce.Options{Burst: -1, Refresh: time.Hour, OnSent: sent.onSent}}, logTo(&bytes.Buffer{}))
	start(t, m)
	v4, v6 := netip.MustParseAddr("198.18.0.30"), netip.MustParseAddr("fd00:1ab::30")
	in := func(f func() error) {
		t.Helper()
		if err := netnstest.InNS(ns, f); err != nil {
			t.Fatal(err)
		}
	}
	until := time.Now().Add(3 * time.Second)
	in(func() error { return m.Up(v4, until) })
	in(func() error { return m.Up(v6, until) })
	sent.take()
	in(func() error { return m.Preserve(v4) })
	in(func() error { return m.Preserve(v6) })
	if diff := cmp.Diff([]netip.Addr{v4}, hostAddrs(t, h), cmpAddr); diff != "" {
		t.Errorf("after Preserve: on eth0 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]netip.Addr{{v4}}, sil.sets, cmpAddr); diff != "" {
		t.Errorf("after Preserve: silenced (-want +got):\n%s", diff)
	}
	if got := m.Bound(); len(got) != 0 {
		t.Errorf("Bound = %v, want none", got)
	}
	if diff := cmp.Diff([]netip.Addr{v4}, m.Preserved(), cmpAddr); diff != "" {
		t.Errorf("Preserved (-want +got):\n%s", diff)
	}
	// Past the lease's end the preserved address is still there.
	time.Sleep(10*time.Millisecond + time.Until(until))
	if diff := cmp.Diff([]netip.Addr{v4}, hostAddrs(t, h), cmpAddr); diff != "" {
		t.Errorf("after the old lifetime: on eth0 (-want +got):\n%s", diff)
	}
	in(func() error { return m.Up(v4, time.Now().Add(10*time.Second)) })
	if diff := cmp.Diff([]netip.Addr{v4}, sent.take(), cmpAddr); diff != "" {
		t.Errorf("Up again: announced (-want +got):\n%s", diff)
	}
	in(func() error { return m.Preserve(v4) })
	in(func() error { return m.Down(v4) })
	if got := hostAddrs(t, h); len(got) != 0 {
		t.Errorf("after Down: on eth0 %v", got)
	}
	if diff := cmp.Diff([][]netip.Addr{{v4}, nil, {v4}, nil}, sil.sets, cmpAddr); diff != "" {
		t.Errorf("silences (-want +got):\n%s", diff)
	}
}

package dnsname

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

var cmpAddr = cmpopts.EquateComparable(netip.Addr{})

func addrs(s ...string) []netip.Addr {
	out := []netip.Addr{}
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func TestPick(t *testing.T) {
	all := addrs("fd00::2", "198.18.0.2", "198.18.0.1", "fd00::1")
	tests := []struct {
		mode Mode
		want []netip.Addr
	}{
		{First, addrs("fd00::2")},
		{IPv4, addrs("198.18.0.2")},
		{IPv6, addrs("fd00::2")},
		{Dual, addrs("198.18.0.2", "fd00::2")},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, tt.mode.Pick(all), cmpAddr, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.mode, diff)
		}
	}
	if got := IPv6.Pick(addrs("198.18.0.1")); len(got) != 0 {
		t.Errorf("ipv6 of an IPv4-only name = %v", got)
	}
	for in, want := range map[string]Mode{"": First, "dual": Dual} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("both"); err == nil {
		t.Error("ParseMode(both) accepted")
	}
}

// fakeDNS answers from a table the test changes.
type fakeDNS struct {
	mu    sync.Mutex
	table map[string][]netip.Addr
	fail  bool
}

func (f *fakeDNS) lookup(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, errors.New("no server")
	}
	return f.table[host], nil
}

func (f *fakeDNS) setTo(host string, a []netip.Addr, fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.table[host], f.fail = a, fail
}

// A new name is resolved at once; a change found by the periodic
// re-resolution is reported; a failed lookup keeps the last addresses.
func TestResolver(t *testing.T) {
	dns := &fakeDNS{table: map[string][]netip.Addr{"web.lab": addrs("198.18.0.1")}}
	clk := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	changed := make(chan string, 10)
	armed := make(chan time.Time, 10)
	clk.OnReset(func(at time.Time) { armed <- at })
	r := New(Config{Lookup: dns.lookup, Mode: First, Interval: 30 * time.Second, Clock: clk, OnChange: func(n string) { changed <- n }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if _, ok := r.Addrs("web.lab"); ok {
		t.Fatal("resolved before Run looked it up")
	}
	if n := <-changed; n != "web.lab" {
		t.Fatalf("changed %q", n)
	}
	check := func(want []netip.Addr) {
		t.Helper()
		got, _ := r.Addrs("web.lab")
		if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
			t.Errorf("Addrs (-want +got):\n%s", diff)
		}
	}
	check(addrs("198.18.0.1"))

	dns.setTo("web.lab", nil, true)
	<-armed                    // at start
	<-armed                    // after resolving the new name
	clk.Step(30 * time.Second) // lookup fails: kept
	dns.setTo("web.lab", addrs("198.18.0.9"), false)
	<-armed
	clk.Step(30 * time.Second)
	if n := <-changed; n != "web.lab" {
		t.Fatalf("changed %q", n)
	}
	check(addrs("198.18.0.9"))
}

package routed_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vigil-lb/vigil/pkg/bgpspec"
	"github.com/vigil-lb/vigil/pkg/routed"
)

// world logs, in order, what the dataplane asks of the speaker, the guard
// and lo.
type world struct{ calls []string }

func (w *world) Announce(_ context.Context, r bgpspec.Route) error {
	w.calls = append(w.calls, "announce "+r.Prefix.String())
	return nil
}

func (w *world) Withdraw(_ context.Context, p netip.Prefix) error {
	w.calls = append(w.calls, "withdraw "+p.String())
	return nil
}

func (w *world) Set(addrs []netip.Addr) error {
	w.calls = append(w.calls, fmt.Sprintf("hide %v", addrs))
	return nil
}

func (w *world) Put(a netip.Addr) error {
	w.calls = append(w.calls, "bind "+a.String())
	return nil
}

func (w *world) Unbind(a netip.Addr) (bool, error) {
	w.calls = append(w.calls, "unbind "+a.String())
	return true, nil
}

func (w *world) take() []string { c := w.calls; w.calls = nil; return c }

// An address is hidden from ARP before it is bound, and bound before it is
// advertised; withdrawn before it is unbound, unbound before it is shown
// again. A restarted run removes what the journal lists.
func TestOrder(t *testing.T) {
	ctx := t.Context()
	w := &world{}
	path := filepath.Join(t.TempDir(), "routes.json")
	d := routed.New(routed.Config{Journal: path}, w, w, w)
	a, b := netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("fd00:1ab::200")
	for _, ip := range []netip.Addr{a, b, a} {
		if err := d.Advertise(ctx, ip, ""); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"hide [198.18.0.200]", "bind 198.18.0.200", "announce 198.18.0.200/32",
		"hide [198.18.0.200 fd00:1ab::200]", "bind fd00:1ab::200", "announce fd00:1ab::200/128",
		"announce 198.18.0.200/32"}
	if diff := cmp.Diff(want, w.take()); diff != "" {
		t.Errorf("advertise (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]netip.Addr{a, b}, d.Advertised(), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("Advertised (-want +got):\n%s", diff)
	}
	if err := d.Withdraw(ctx, a); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"withdraw 198.18.0.200/32", "unbind 198.18.0.200", "hide [fd00:1ab::200]"}, w.take()); diff != "" {
		t.Errorf("withdraw (-want +got):\n%s", diff)
	}
	// Killed now: the next run removes b from lo and hides nothing.
	next := routed.New(routed.Config{Journal: path}, w, w, w)
	removed, err := next.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Addr{b}, removed, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("Recover (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"unbind fd00:1ab::200", "hide []"}, w.take()); diff != "" {
		t.Errorf("recover calls (-want +got):\n%s", diff)
	}
}

// Check has the guard read itself back with what is advertised (it trusts
// its own writes in between); without lo and a guard there is nothing to
// check.
func TestCheck(t *testing.T) {
	w := &world{}
	d := routed.New(routed.Config{}, w, w, w)
	a := netip.MustParseAddr("198.18.0.200")
	if err := d.Advertise(t.Context(), a, ""); err != nil {
		t.Fatal(err)
	}
	w.take()
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	if err := routed.New(routed.Config{}, w, nil, nil).Check(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"hide [198.18.0.200]"}, w.take()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Without lo and a guard (L2 also on, or kube-proxy makes it local), only
// routes change.
func TestAdvertiseOnly(t *testing.T) {
	w := &world{}
	d := routed.New(routed.Config{}, w, nil, nil)
	a := netip.MustParseAddr("198.18.0.200")
	if err := d.Advertise(t.Context(), a, ""); err != nil {
		t.Fatal(err)
	}
	if err := d.Withdraw(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"announce 198.18.0.200/32", "withdraw 198.18.0.200/32"}, w.take()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// An aggregate is advertised with the first address it carries and
// withdrawn with the last; an address whose routes change (the
// advertisement changed) has the routes it no longer gets withdrawn.
func TestAggregates(t *testing.T) {
	ctx := t.Context()
	w := &world{}
	agg := true
	routes := func(a netip.Addr, _ string) []bgpspec.Route {
		host := bgpspec.Route{Prefix: netip.PrefixFrom(a, 32)}
		if !agg {
			return []bgpspec.Route{host}
		}
		return []bgpspec.Route{host, {Prefix: netip.PrefixFrom(a, 24).Masked()}}
	}
	d := routed.New(routed.Config{Routes: routes}, w, nil, nil)
	a, b := netip.MustParseAddr("198.18.5.1"), netip.MustParseAddr("198.18.5.2")
	for _, ip := range []netip.Addr{a, b} {
		if err := d.Advertise(ctx, ip, "p"); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"announce 198.18.5.1/32", "announce 198.18.5.0/24", "announce 198.18.5.2/32", "announce 198.18.5.0/24"}
	if diff := cmp.Diff(want, w.take()); diff != "" {
		t.Errorf("advertise (-want +got):\n%s", diff)
	}
	if err := d.Withdraw(ctx, a); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"withdraw 198.18.5.1/32"}, w.take()); diff != "" {
		t.Errorf("first withdraw: the /24 still carries b (-want +got):\n%s", diff)
	}
	agg = false // the advertisement lost its aggregationLength
	if err := d.Advertise(ctx, b, "p"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"announce 198.18.5.2/32", "withdraw 198.18.5.0/24"}, w.take()); diff != "" {
		t.Errorf("re-advertise without aggregation (-want +got):\n%s", diff)
	}
	if err := d.Withdraw(ctx, b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"withdraw 198.18.5.2/32"}, w.take()); diff != "" {
		t.Errorf("last withdraw (-want +got):\n%s", diff)
	}
}

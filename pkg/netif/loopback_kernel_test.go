package netif_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vigil-lb/vigil/pkg/netif"
)

// TestKernelBindOnLoopback binds VIPs on lo, as the agent does for VIPs
// announced by BGP only: they become local addresses of the node (a local
// route), ::1 stays out of Addrs and cannot be unbound.
func TestKernelBindOnLoopback(t *testing.T) {
	h, lo, routes, vips := loopbackFixture(t)

	type result struct {
		Before, Bound, After []netip.Addr
		Added, AddedAgain    []bool
		Local                []bool // the kernel routes the VIP as local
		Removed              []bool
	}
	var got result
	var errs []error
	as := func(v []netip.Addr, err error) []netip.Addr { errs = append(errs, err); return v }
	b := func(v bool, err error) bool { errs = append(errs, err); return v }
	got.Before = as(lo.Addrs())
	for _, a := range vips {
		got.Added = append(got.Added, b(lo.Bind(a)))
		got.AddedAgain = append(got.AddedAgain, b(lo.Bind(a)))
	}
	got.Bound = as(lo.Addrs())
	for _, a := range vips {
		got.Local = append(got.Local, routes.wait(t, a))
	}
	for _, a := range vips {
		got.Removed = append(got.Removed, b(lo.Unbind(a)))
	}
	got.After = as(lo.Addrs())
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	want := result{
		Bound:      vips,
		Added:      []bool{true, true},
		AddedAgain: []bool{false, false},
		Local:      []bool{true, true},
		Removed:    []bool{true, true},
	}
	if diff := cmp.Diff(want, got, cmpAddr, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("bind on lo (-want +got):\n%s", diff)
	}

	if _, err := lo.Unbind(netip.IPv6Loopback()); err == nil {
		t.Error("Unbind(::1) on lo succeeded")
	}
	if _, err := lo.Bind(netip.MustParseAddr("127.0.0.5")); err == nil {
		t.Error("Bind(127.0.0.5) on lo succeeded")
	}
	rs, err := h.RouteGet(net.IPv6loopback)
	if err != nil || len(rs) != 1 || rs[0].Type != unix.RTN_LOCAL {
		t.Errorf("::1 is no longer local after the test: %v %v", rs, err)
	}
}

// loopbackFixture opens lo in a fresh namespace, watching its local routes,
// with an IPv4 and an IPv6 VIP to bind there.
func loopbackFixture(t *testing.T) (*netlink.Handle, *netif.Link, *localRoutes, []netip.Addr) {
	t.Helper()
	ns, h := fixture(t)
	routes := watchLocalRoutes(t, ns)
	lo, err := netif.OpenWith(h, "lo")
	if err != nil {
		t.Fatal(err)
	}
	return h, lo, routes, []netip.Addr{netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("fd00:1ab::200")}
}

// localRoutes collects the local routes the kernel adds in a namespace.
type localRoutes struct {
	updates chan netlink.RouteUpdate
	seen    map[netip.Addr]bool
}

func watchLocalRoutes(t *testing.T, ns string) *localRoutes {
	t.Helper()
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	w := &localRoutes{updates: make(chan netlink.RouteUpdate, 256), seen: map[netip.Addr]bool{}}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	opts := netlink.RouteSubscribeOptions{Namespace: &nsh}
	if err := netlink.RouteSubscribeWithOptions(w.updates, done, opts); err != nil {
		t.Fatal(err)
	}
	return w
}

// wait reports whether the kernel added a local host route for a within
// five seconds. IPv6 inserts it from a work item, a moment after the
// address was added, even with IFA_F_NODAD.
func (w *localRoutes) wait(t *testing.T, a netip.Addr) bool {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for !w.seen[a] {
		select {
		case u, ok := <-w.updates:
			if !ok {
				t.Fatal("route updates ended")
			}
			if u.Type == unix.RTM_NEWROUTE && u.Route.Type == unix.RTN_LOCAL && u.Dst != nil {
				if d, ok := netip.AddrFromSlice(u.Dst.IP); ok {
					w.seen[d.Unmap()] = true
				}
			}
		case <-timeout:
			return false
		}
	}
	return true
}

// TestKernelPutOnLoopback binds VIPs on lo with Put, as the routed
// dataplane does: each is a permanent local address, Put again changes
// nothing, a lifetime BindFor gave is made permanent, and Unbind removes it.
func TestKernelPutOnLoopback(t *testing.T) {
	h, lo, routes, vips := loopbackFixture(t)
	if _, err := lo.BindFor(vips[0], time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for _, a := range vips {
			if err := lo.Put(a); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, a := range vips {
		if !routes.wait(t, a) {
			t.Errorf("%s is not local after Put", a)
		}
		if _, _, permanent, found := lifetimeOn(t, h, "lo", netip.PrefixFrom(a, a.BitLen())); !found || !permanent {
			t.Errorf("%s after Put: found %t, permanent %t; want permanent", a, found, permanent)
		}
	}
	got, err := lo.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(vips, got, cmpAddr); diff != "" {
		t.Errorf("lo's host prefixes after Put (-want +got):\n%s", diff)
	}
	for _, a := range vips {
		if removed, err := lo.Unbind(a); err != nil || !removed {
			t.Errorf("Unbind(%s) = %t, %v; want true, nil", a, removed, err)
		}
	}
	if err := lo.Put(netip.MustParseAddr("127.0.0.5")); err == nil {
		t.Error("Put(127.0.0.5) on lo succeeded")
	}
}

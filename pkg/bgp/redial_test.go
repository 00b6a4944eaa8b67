package bgp

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v4/api"
)

// A session the router resets is dialled again by a new GoBGP peer (no
// idle hold), and comes back with its route.
func TestDroppedSessionRedialled(t *testing.T) {
	p := newPair(t, false)
	ctx := context.Background()
	eventually(t, 20*time.Second, "session established", established(t, p.node, 1))
	if err := p.node.Announce(ctx, Route{Prefix: v4VIP}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "route on the router", func() bool { return len(rib(t, p.router)) == 1 })
	p.router.op.Lock()
	err := p.router.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: "127.0.0.2", Communication: "test"})
	p.router.op.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the node redials", func() bool { p.node.mu.Lock(); defer p.node.mu.Unlock(); return p.node.redials == 1 })
	start := time.Now()
	eventually(t, 20*time.Second, "session established again", established(t, p.node, 1))
	eventually(t, 20*time.Second, "route on the router again", func() bool { return len(rib(t, p.router)) == 1 })
	t.Logf("established again %v after the redial", time.Since(start).Round(time.Millisecond))
}

// redialDue: one redial per peer per RedialEvery; peers removed or
// established again are forgotten.
func TestRedialDue(t *testing.T) {
	a, b, c := netip.MustParseAddr("198.18.0.254"), netip.MustParseAddr("198.18.0.253"), netip.MustParseAddr("198.18.0.252")
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	s := newSpeaker(t, Config{ASN: 64513, RouterID: netip.MustParseAddr("192.0.2.2")})
	for _, addr := range []netip.Addr{a, b} {
		s.applied[addr] = Peer{Address: addr, ASN: 65001}
		s.status[addr] = peerStatus{state: "idle"}
	}
	s.status[c] = peerStatus{state: "idle"} // not applied: removed meanwhile
	drop := func(addrs ...netip.Addr) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, addr := range addrs {
			s.sessionDroppedLocked(addr)
		}
	}
	steps := []struct {
		name     string
		before   func()
		at       time.Time
		wantDue  []netip.Addr
		wantNext time.Time
	}{
		{"first drops: both at once", func() { drop(a, b, c) }, t0, []netip.Addr{a, b}, time.Time{}},
		{"a drops again 2 s later: waits", func() { drop(a) }, t0.Add(2 * time.Second), nil, t0.Add(RedialEvery)},
		{"due 5 s after its last", nil, t0.Add(RedialEvery), []netip.Addr{a}, time.Time{}},
		{"b drops, then is back by itself", func() {
			drop(b)
			s.status[b] = peerStatus{state: "established"}
		}, t0.Add(6 * time.Second), nil, time.Time{}},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before()
		}
		due, next := s.redialDue(st.at)
		var got []netip.Addr
		for _, p := range due {
			got = append(got, p.Address)
		}
		slices.SortFunc(got, netip.Addr.Compare)
		slices.SortFunc(st.wantDue, netip.Addr.Compare)
		if diff := cmp.Diff(st.wantDue, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
			t.Errorf("%s: due (-want +got):\n%s", st.name, diff)
		}
		if !next.Equal(st.wantNext) {
			t.Errorf("%s: next = %v, want %v", st.name, next, st.wantNext)
		}
	}
	if len(s.dropped) != 0 {
		t.Errorf("dropped left: %v", s.dropped)
	}
}

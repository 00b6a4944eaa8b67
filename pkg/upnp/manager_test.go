package upnp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

var (
	vip1  = netip.MustParseAddr("198.18.0.150")
	vip2  = netip.MustParseAddr("198.18.0.151")
	extIP = netip.MustParseAddr("198.19.0.1")
	t0    = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

func tcp(local netip.Addr, port uint16) Mapping {
	return Mapping{Protocol: "TCP", ExternalPort: port, Internal: netip.AddrPortFrom(local, port), Description: "vigil default/web", Lease: time.Hour}
}

func udp(local netip.Addr, port uint16) Mapping {
	m := tcp(local, port)
	m.Protocol = "UDP"
	return m
}

// fakeNet is the network as the Manager sees it: a gateway per local
// address, discovery, and a log of every call.
type fakeNet struct {
	mu       sync.Mutex
	calls    []string
	discErr  map[netip.Addr]error // discovery fails with this
	down     bool                 // every gateway call fails like a dead TCP connection
	refuse   map[portKey]error    // Add of this protocol/port fails with this
	delErr   error                // Delete fails with this
	hang     map[string]bool      // "add 198.18.0.151": that call blocks until its ctx ends
	hanging  chan string          // a call that hangs says so here
	ip       netip.Addr
	gwNumber int
}

type fakeGW struct {
	n      *fakeNet
	name   string
	local  netip.Addr
	mapped map[portKey]Mapping
}

func newFakeNet() *fakeNet {
	return &fakeNet{discErr: map[netip.Addr]error{}, refuse: map[portKey]error{}, hang: map[string]bool{},
		hanging: make(chan string, 16), ip: extIP}
}

func (f *fakeNet) logf(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeNet) discover(_ context.Context, local netip.Addr) (Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logf("discover %s", local)
	if err := f.discErr[local]; err != nil {
		return nil, err
	}
	f.gwNumber++
	return &fakeGW{n: f, name: fmt.Sprintf("gw%d", f.gwNumber), local: local, mapped: map[portKey]Mapping{}}, nil
}

var errDown = errors.New("dial tcp 198.18.0.1:5000: connect: no route to host")

// call logs a call and, when it is to hang, blocks until ctx ends.
func (g *fakeGW) call(ctx context.Context, op, args string) error {
	g.n.mu.Lock()
	g.n.logf("%s %s%s", g.name, op, args)
	hang := g.n.hang[op+" "+g.local.String()]
	g.n.mu.Unlock()
	if !hang {
		return nil
	}
	g.n.hanging <- g.name + " " + op + args
	<-ctx.Done()
	return fmt.Errorf("%s %s: %w", g.name, op, ctx.Err())
}

func (g *fakeGW) ExternalIP(ctx context.Context) (netip.Addr, error) {
	if err := g.call(ctx, "ip", ""); err != nil {
		return netip.Addr{}, err
	}
	g.n.mu.Lock()
	defer g.n.mu.Unlock()
	if g.n.down {
		return netip.Addr{}, errDown
	}
	return g.n.ip, nil
}

func (g *fakeGW) Add(ctx context.Context, m Mapping) error {
	if err := g.call(ctx, "add", fmt.Sprintf(" %s %d->%s %v", m.Protocol, m.ExternalPort, m.Internal, m.Lease)); err != nil {
		return err
	}
	g.n.mu.Lock()
	defer g.n.mu.Unlock()
	if g.n.down {
		return errDown
	}
	if err := g.n.refuse[keyOf(m)]; err != nil {
		return err
	}
	g.mapped[keyOf(m)] = m
	return nil
}

func (g *fakeGW) Delete(ctx context.Context, protocol string, port uint16) error {
	if err := g.call(ctx, "delete", fmt.Sprintf(" %s %d", protocol, port)); err != nil {
		return err
	}
	g.n.mu.Lock()
	defer g.n.mu.Unlock()
	if g.n.down {
		return errDown
	}
	if g.n.delErr != nil {
		return g.n.delErr
	}
	delete(g.mapped, portKey{protocol, port})
	return nil
}

func (f *fakeNet) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// view is a State in comparable form.
type view struct {
	External string
	Mapped   []string
	Err      string
}

func viewOf(s State) view {
	v := view{Err: errString(s.Err)}
	if s.External.IsValid() {
		v.External = s.External.String()
	}
	for _, m := range s.Mapped {
		v.Mapped = append(v.Mapped, fmt.Sprintf("%s %d->%s", m.Protocol, m.ExternalPort, m.Internal))
	}
	return v
}

// harness drives a Manager one step at a time on a fake clock.
type harness struct {
	t       *testing.T
	clock   *clocktest.Fake
	net     *fakeNet
	m       *Manager
	changed []string
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, clock: clocktest.New(t0), net: newFakeNet()}
	h.m = NewManager(Config{
		OnChange: func(key string) { h.changed = append(h.changed, key) },
		Discover: h.net.discover,
		RetryMin: time.Second,
		RetryMax: 8 * time.Second,
		Clock:    h.clock,
	})
	return h
}

// tick is one step of a scenario: change something, run one Manager step
// at At, and check what it did.
type tick struct {
	At        time.Duration // since t0
	Do        func(h *harness)
	WantCalls []string
	// WantNext is when the Manager next has work, since t0 (-1: none).
	WantNext    time.Duration
	WantChanged []string
	WantState   map[string]view // keys not listed are not checked
}

func (h *harness) run(ticks []tick) {
	h.t.Helper()
	for i, tk := range ticks {
		h.clock.Set(t0.Add(tk.At))
		if tk.Do != nil {
			tk.Do(h)
		}
		h.changed = nil
		next := h.m.step(context.Background())
		if diff := cmp.Diff(tk.WantCalls, h.net.takeCalls()); diff != "" {
			h.t.Errorf("tick %d (at %v): calls (-want +got):\n%s", i, tk.At, diff)
		}
		gotNext := time.Duration(-1)
		if !next.IsZero() {
			gotNext = next.Sub(t0)
		}
		if gotNext != tk.WantNext {
			h.t.Errorf("tick %d (at %v): next = %v, want %v", i, tk.At, gotNext, tk.WantNext)
		}
		if diff := cmp.Diff(tk.WantChanged, h.changed); diff != "" {
			h.t.Errorf("tick %d (at %v): OnChange (-want +got):\n%s", i, tk.At, diff)
		}
		for key, want := range tk.WantState {
			if diff := cmp.Diff(want, viewOf(h.m.State(key))); diff != "" {
				h.t.Errorf("tick %d (at %v): State(%s) (-want +got):\n%s", i, tk.At, key, diff)
			}
		}
	}
}

func set(key string, local netip.Addr, want ...Mapping) func(h *harness) {
	return func(h *harness) { h.m.Set(key, local, want) }
}

const (
	svc  = "default/web"
	svc2 = "default/dns"
)

var (
	mapped1 = view{External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.150:80", "UDP 53->198.18.0.150:53"}}
	none    = view{}
)

func TestManager(t *testing.T) {
	noGW := errors.New("upnp: no UPnP gateway answered an SSDP search from 198.18.0.150: context deadline exceeded")
	conflict := &Error{Action: "AddPortMapping", Code: CodeConflict, Description: "ConflictInMappingEntry"}
	tests := []struct {
		name  string
		ticks []tick
	}{
		{
			name: "Set adds every mapping, then refreshes at half the lease",
			ticks: []tick{
				{Do: set(svc, vip1, udp(vip1, 53), tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}, WantState: map[string]view{svc: mapped1}},
				{At: 29 * time.Minute, WantNext: 30 * time.Minute},
				{At: 30 * time.Minute,
					WantCalls: []string{"gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
					WantNext:  time.Hour, WantState: map[string]view{svc: mapped1}},
				{At: time.Hour,
					WantCalls: []string{"gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
					WantNext:  90 * time.Minute},
			},
		},
		{
			name: "Set nil deletes everything",
			ticks: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80), udp(vip1, 53)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
				{At: time.Minute, Do: set(svc, vip1),
					WantCalls: []string{"gw1 delete TCP 80", "gw1 delete UDP 53"},
					WantNext:  -1, WantChanged: []string{svc}, WantState: map[string]view{svc: none}},
				{At: 31 * time.Minute, WantNext: -1},
			},
		},
		{
			name: "a port no longer wanted is deleted, the others stay",
			ticks: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80), udp(vip1, 53)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
				{At: time.Minute, Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"gw1 delete UDP 53"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc},
					WantState: map[string]view{svc: {External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.150:80"}}}},
			},
		},
		{
			name: "a new local address: delete from the old one, then add from the new one",
			ticks: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
				{At: time.Minute, Do: set(svc, vip2, tcp(vip2, 80)),
					WantCalls: []string{"gw1 delete TCP 80", "discover 198.18.0.151", "gw2 add TCP 80->198.18.0.151:80 1h0m0s", "gw2 ip"},
					WantNext:  31 * time.Minute, WantChanged: []string{svc},
					WantState: map[string]view{svc: {External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.151:80"}}}},
			},
		},
		{
			name: "discovery fails: the error is reported and retried with backoff",
			ticks: []tick{
				{Do: func(h *harness) { h.net.discErr[vip1] = noGW; h.m.Set(svc, vip1, []Mapping{tcp(vip1, 80)}) },
					WantCalls: []string{"discover 198.18.0.150"},
					WantNext:  time.Second, WantChanged: []string{svc}, WantState: map[string]view{svc: {Err: noGW.Error()}}},
				{At: 500 * time.Millisecond, WantNext: time.Second},
				{At: time.Second, WantCalls: []string{"discover 198.18.0.150"}, WantNext: 3 * time.Second},
				{At: 3 * time.Second, WantCalls: []string{"discover 198.18.0.150"}, WantNext: 7 * time.Second},
				{At: 7 * time.Second, WantCalls: []string{"discover 198.18.0.150"}, WantNext: 15 * time.Second},
				{At: 15 * time.Second, WantCalls: []string{"discover 198.18.0.150"}, WantNext: 23 * time.Second}, // RetryMax 8s
				{At: 23 * time.Second, Do: func(h *harness) { delete(h.net.discErr, vip1) },
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  23*time.Second + 30*time.Minute, WantChanged: []string{svc},
					WantState: map[string]view{svc: {External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.150:80"}}}},
			},
		},
		{
			name: "a new Set resets the backoff",
			ticks: []tick{
				{Do: func(h *harness) { h.net.discErr[vip1] = noGW; h.m.Set(svc, vip1, []Mapping{tcp(vip1, 80)}) },
					WantCalls: []string{"discover 198.18.0.150"},
					WantNext:  time.Second, WantChanged: []string{svc}},
				{At: time.Second, WantCalls: []string{"discover 198.18.0.150"}, WantNext: 3 * time.Second},
				{At: 2 * time.Second, Do: func(h *harness) {
					delete(h.net.discErr, vip1)
					h.m.Set(svc, vip1, []Mapping{tcp(vip1, 80), udp(vip1, 53)})
				},
					// The gateway's backoff still runs: the key waits for it.
					WantNext: 3 * time.Second},
				{At: 3 * time.Second,
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
					WantNext:  3*time.Second + 30*time.Minute, WantChanged: []string{svc}, WantState: map[string]view{svc: mapped1}},
			},
		},
		{
			name: "a refused mapping is retried alone; the others are in place",
			ticks: []tick{
				{Do: func(h *harness) {
					h.net.refuse[portKey{"UDP", 53}] = conflict
					h.m.Set(svc, vip1, []Mapping{tcp(vip1, 80), udp(vip1, 53)})
				},
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
					WantNext:  time.Second, WantChanged: []string{svc},
					WantState: map[string]view{svc: {External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.150:80"},
						Err: "AddPortMapping refused: UPnP error 718 (ConflictInMappingEntry)"}}},
				{At: time.Second, WantCalls: []string{"gw1 add UDP 53->198.18.0.150:53 1h0m0s"}, WantNext: 3 * time.Second},
				{At: 3 * time.Second, Do: func(h *harness) { delete(h.net.refuse, portKey{"UDP", 53}) },
					WantCalls: []string{"gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}, WantState: map[string]view{svc: mapped1}},
			},
		},
		{
			name: "a transport error makes it discover the gateway again",
			ticks: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
				{At: 30 * time.Minute, Do: func(h *harness) { h.net.down = true },
					WantCalls: []string{"gw1 add TCP 80->198.18.0.150:80 1h0m0s"},
					WantNext:  30*time.Minute + time.Second, WantChanged: []string{svc},
					WantState: map[string]view{svc: {External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.150:80"}, Err: errDown.Error()}}},
				{At: 30*time.Minute + time.Second, Do: func(h *harness) { h.net.down = false },
					WantCalls: []string{"discover 198.18.0.150", "gw2 add TCP 80->198.18.0.150:80 1h0m0s", "gw2 ip"},
					WantNext:  60*time.Minute + time.Second, WantChanged: []string{svc},
					WantState: map[string]view{svc: {External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.150:80"}}}},
			},
		},
		{
			name: "renewals that keep failing: the mapping is gone when its lease ends",
			ticks: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
				{At: 30 * time.Minute, Do: func(h *harness) { h.net.discErr[vip1] = noGW; h.net.down = true },
					WantCalls: []string{"gw1 add TCP 80->198.18.0.150:80 1h0m0s"},
					WantNext:  30*time.Minute + time.Second, WantChanged: []string{svc}},
				{At: 30*time.Minute + time.Second,
					WantCalls: []string{"discover 198.18.0.150"},
					WantNext:  30*time.Minute + 2*time.Second, WantChanged: []string{svc},
					WantState: map[string]view{svc: {External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.150:80"}, Err: noGW.Error()}}},
				{At: 61 * time.Minute,
					WantCalls: []string{"discover 198.18.0.150"},
					WantNext:  61*time.Minute + 2*time.Second, WantChanged: []string{svc},
					WantState: map[string]view{svc: {Err: noGW.Error()}}},
			},
		},
		{
			name: "a failed delete is retried with backoff until it works",
			ticks: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
				{At: time.Minute, Do: func(h *harness) {
					h.net.delErr = &Error{Action: "DeletePortMapping", Code: 606}
					h.m.Set(svc, vip1, nil)
				},
					WantCalls: []string{"gw1 delete TCP 80"},
					WantNext:  time.Minute + time.Second, WantChanged: []string{svc}, WantState: map[string]view{svc: none}},
				{At: time.Minute + time.Second, WantCalls: []string{"gw1 delete TCP 80"}, WantNext: time.Minute + 3*time.Second},
				// The drain ends: OnChange tells the caller it may drop the address.
				{At: time.Minute + 3*time.Second, Do: func(h *harness) { h.net.delErr = nil },
					WantCalls: []string{"gw1 delete TCP 80"}, WantNext: -1, WantChanged: []string{svc}},
			},
		},
		{
			name: "a pending delete is dropped when the mapping is wanted again",
			ticks: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
				{At: time.Minute, Do: func(h *harness) { h.net.delErr = errors.New("boom"); h.m.Set(svc, vip1, nil) },
					WantCalls: []string{"gw1 delete TCP 80"},
					WantNext:  time.Minute + time.Second, WantChanged: []string{svc}},
				{At: time.Minute + 500*time.Millisecond, Do: set(svc2, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw2 add TCP 80->198.18.0.150:80 1h0m0s", "gw2 ip"},
					WantNext:  31*time.Minute + 500*time.Millisecond, WantChanged: []string{svc2, svc},
					WantState: map[string]view{svc2: {External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.150:80"}}}},
				{At: time.Minute + 2*time.Second, WantNext: 31*time.Minute + 500*time.Millisecond},
			},
		},
		{
			name: "a pending delete is dropped when its lease has run out",
			ticks: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
				{At: 50 * time.Minute, Do: func(h *harness) { h.net.down = true; h.net.discErr[vip1] = noGW; h.m.Set(svc, vip1, nil) },
					WantCalls: []string{"gw1 delete TCP 80"},
					WantNext:  50*time.Minute + time.Second, WantChanged: []string{svc}},
				{At: 50*time.Minute + time.Second, WantCalls: []string{"discover 198.18.0.150"}, WantNext: 50*time.Minute + 3*time.Second},
				{At: 60 * time.Minute, WantNext: -1, WantChanged: []string{svc}},
			},
		},
		{
			name: "permanent mappings are never refreshed",
			ticks: []tick{
				{Do: func(h *harness) { m := tcp(vip1, 80); m.Lease = 0; h.m.Set(svc, vip1, []Mapping{m}) },
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 0s", "gw1 ip"},
					WantNext:  -1, WantChanged: []string{svc}},
				{At: 48 * time.Hour, WantNext: -1},
			},
		},
		{
			name: "a changed description or lease is sent again; a changed internal port replaces the mapping",
			ticks: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
				{At: time.Minute, Do: func(h *harness) { m := tcp(vip1, 80); m.Lease = 2 * time.Hour; h.m.Set(svc, vip1, []Mapping{m}) },
					WantCalls: []string{"gw1 add TCP 80->198.18.0.150:80 2h0m0s", "gw1 ip"},
					WantNext:  61 * time.Minute, WantChanged: []string{svc}},
				{At: 2 * time.Minute, Do: func(h *harness) {
					m := tcp(vip1, 80)
					m.Internal = netip.AddrPortFrom(vip1, 8080)
					h.m.Set(svc, vip1, []Mapping{m})
				},
					// The old mapping's delete is dropped: the new add replaces it.
					WantCalls: []string{"gw1 add TCP 80->198.18.0.150:8080 1h0m0s", "gw1 ip"},
					WantNext:  32 * time.Minute, WantChanged: []string{svc},
					WantState: map[string]view{svc: {External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.150:8080"}}}},
			},
		},
		{
			name: "invalid mappings are reported, the valid ones mapped",
			ticks: []tick{
				{Do: func(h *harness) {
					bad := tcp(vip1, 81)
					bad.Protocol = "SCTP"
					lower := udp(vip1, 53)
					lower.Protocol = "udp"
					h.m.Set(svc, vip1, []Mapping{tcp(vip1, 80), bad, lower, tcp(vip1, 80), {Protocol: "TCP", ExternalPort: 82}})
				},
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc},
					WantState: map[string]view{svc: {External: "198.19.0.1", Mapped: []string{"TCP 80->198.18.0.150:80", "UDP 53->198.18.0.150:53"},
						Err: "upnp: protocol \"SCTP\" is neither TCP nor UDP\nupnp: TCP port 80 wanted twice\nupnp: mapping TCP 82 to invalid AddrPort: port 0 or no internal address"}}},
			},
		},
		{
			name: "no local address",
			ticks: []tick{
				{Do: set(svc, netip.Addr{}, tcp(vip1, 80)),
					WantNext: -1, WantChanged: []string{svc},
					WantState: map[string]view{svc: {Err: "upnp: no local address to map from"}}},
			},
		},
		{
			name: "two keys on one local address share the gateway",
			ticks: []tick{
				{Do: func(h *harness) {
					h.m.Set(svc, vip1, []Mapping{tcp(vip1, 80)})
					h.m.Set(svc2, vip1, []Mapping{udp(vip1, 53)})
				},
					WantCalls: []string{"discover 198.18.0.150", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc2, svc}},
				{At: time.Minute, Do: set(svc2, vip1),
					WantCalls: []string{"gw1 delete UDP 53"}, WantNext: 30 * time.Minute, WantChanged: []string{svc2}},
			},
		},
		{
			name: "the same Set twice changes nothing",
			ticks: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
				{At: time.Minute, Do: set(svc, vip1, tcp(vip1, 80)), WantNext: 30 * time.Minute},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			// OnChange order is sorted by key; keep the expectation readable.
			for i := range tt.ticks {
				slices.Sort(tt.ticks[i].WantChanged)
			}
			h.run(tt.ticks)
		})
	}
}

// running is a Manager whose Run goroutine runs on a fake clock.
type running struct {
	t       *testing.T
	net     *fakeNet
	clock   *clocktest.Fake
	m       *Manager
	changed chan string
	stop    context.CancelFunc
	done    chan error
}

func startManager(t *testing.T) *running {
	r := &running{t: t, net: newFakeNet(), clock: clocktest.New(t0), changed: make(chan string, 64), done: make(chan error, 1)}
	r.m = NewManager(Config{Discover: r.net.discover, Clock: r.clock, RetryMin: time.Second, RetryMax: 8 * time.Second,
		OnChange: func(key string) { r.changed <- key }})
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- r.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// waitChange waits for OnChange(key).
func (r *running) waitChange(key, after string) {
	r.t.Helper()
	for {
		select {
		case got := <-r.changed:
			if got == key {
				return
			}
		case <-time.After(10 * time.Second):
			r.t.Fatalf("no OnChange(%s) after %s", key, after)
		}
	}
}

// waitArmed waits until Run waits for the clock to reach at.
func (r *running) waitArmed(at time.Time) {
	r.t.Helper()
	if !r.clock.Await(10*time.Second, func() bool { return slices.ContainsFunc(r.clock.Pending(), at.Equal) }) {
		r.t.Fatalf("Run is not waiting for %v; pending timers: %v", at, r.clock.Pending())
	}
}

// waitHanging waits until a gateway call hangs and returns it.
func (r *running) waitHanging() string {
	r.t.Helper()
	select {
	case call := <-r.net.hanging:
		return call
	case <-time.After(10 * time.Second):
		r.t.Fatal("no gateway call hangs")
		return ""
	}
}

func (r *running) end() {
	r.t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Run = %v, want nil", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		r.t.Fatal("Run did not return after its context ended")
	}
}

func (r *running) wantCalls(what string, want []string) {
	r.t.Helper()
	if diff := cmp.Diff(want, r.net.takeCalls()); diff != "" {
		r.t.Errorf("calls %s (-want +got):\n%s", what, diff)
	}
}

func (r *running) wantState(key string, want view) {
	r.t.Helper()
	if diff := cmp.Diff(want, viewOf(r.m.State(key))); diff != "" {
		r.t.Errorf("State(%s) (-want +got):\n%s", key, diff)
	}
}

// Run: a Set wakes it, OnChange reports the result, and refreshes go out
// when the clock reaches half the lease.
func TestManagerRun(t *testing.T) {
	r := startManager(t)
	r.m.Set(svc, vip1, []Mapping{tcp(vip1, 80), udp(vip1, 53)})
	r.waitChange(svc, "Set")
	r.wantState(svc, mapped1)
	r.waitArmed(t0.Add(30 * time.Minute))
	r.wantCalls("after Set", []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"})

	r.clock.Set(t0.Add(30 * time.Minute))
	r.waitArmed(t0.Add(time.Hour))
	r.wantCalls("at half the lease", []string{"gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"})

	if err := r.m.Run(context.Background()); err == nil {
		t.Errorf("a second concurrent Run did not fail")
	}
}

// When Run's context ends it deletes nothing and sends nothing: the
// mappings stay on the gateway, and in State, for the next holder of the
// VIP to take over (or for Drain).
func TestManagerRunEndDeletesNothing(t *testing.T) {
	r := startManager(t)
	r.m.Set(svc, vip1, []Mapping{tcp(vip1, 80), udp(vip1, 53)})
	r.waitChange(svc, "Set")
	r.m.Set(svc2, vip2, []Mapping{tcp(vip2, 8080)})
	r.waitChange(svc2, "second Set")
	r.net.takeCalls()

	r.end()
	r.wantCalls("when Run ends", nil)
	r.wantState(svc, mapped1)
	r.wantState(svc2, view{External: "198.19.0.1", Mapped: []string{"TCP 8080->198.18.0.151:8080"}})
	if r.m.Draining(svc) || r.m.Draining(svc2) {
		t.Errorf("Draining after Run ended, with nothing to delete")
	}
	select {
	case key := <-r.changed:
		t.Errorf("OnChange(%s) after Run ended", key)
	default:
	}
}

// Drain with no Run: each scenario first runs steps by hand, then drains.
func TestManagerDrain(t *testing.T) {
	noGW := errors.New("upnp: no UPnP gateway answered an SSDP search from 198.18.0.150: context deadline exceeded")
	mapBoth := tick{Do: set(svc, vip1, tcp(vip1, 80), udp(vip1, 53)),
		WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
		WantNext:  30 * time.Minute, WantChanged: []string{svc}}
	tests := []struct {
		name      string
		before    []tick
		do        func(h *harness) // just before Drain
		keys      []string
		wantCalls []string
		wantErr   string // "" for nil
		wantCode  int    // UPnP error code in the error's chain
		// Draining(svc) after Drain, and then the step at 10 s.
		wantDraining bool
		after        tick
	}{
		{
			name:      "deletes every mapping from its VIP and forgets the key",
			before:    []tick{mapBoth},
			keys:      []string{svc},
			wantCalls: []string{"gw1 delete TCP 80", "gw1 delete UDP 53"},
			after:     tick{At: 10 * time.Second, WantNext: -1},
		},
		{
			name:      "a key unknown or with nothing mapped: nothing to send",
			before:    []tick{mapBoth},
			keys:      []string{svc2, "default/other"},
			wantCalls: nil,
			after:     tick{At: 10 * time.Second, WantNext: 30 * time.Minute, WantState: map[string]view{svc: mapped1}},
		},
		{
			name: "the old address's mappings are deleted from it after the key moved",
			before: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
			},
			do:        set(svc, vip2, tcp(vip2, 80)), // no step: nothing mapped from vip2 yet
			keys:      []string{svc},
			wantCalls: []string{"gw1 delete TCP 80"},
			after:     tick{At: 10 * time.Second, WantNext: -1},
		},
		{
			name: "a pending delete is sent at once, whatever its backoff",
			before: []tick{
				mapBoth,
				{At: time.Second, Do: func(h *harness) {
					h.net.delErr = &Error{Action: "DeletePortMapping", Code: 501}
					h.m.Set(svc, vip1, nil)
				},
					WantCalls: []string{"gw1 delete TCP 80", "gw1 delete UDP 53"},
					WantNext:  2 * time.Second, WantChanged: []string{svc}},
			},
			do:        func(h *harness) { h.net.delErr = nil },
			keys:      []string{svc},
			wantCalls: []string{"gw1 delete TCP 80", "gw1 delete UDP 53"},
			// Drain does not call OnChange: its caller knows.
			after: tick{At: 10 * time.Second, WantNext: -1},
		},
		{
			name: "a mapping another key wants from the same address is left to it",
			before: []tick{
				{Do: set(svc, vip1, tcp(vip1, 80)),
					WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
					WantNext:  30 * time.Minute, WantChanged: []string{svc}},
			},
			do:        set(svc2, vip1, tcp(vip1, 80)),
			keys:      []string{svc},
			wantCalls: nil,
			after: tick{At: 10 * time.Second,
				WantCalls: []string{"gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 ip"},
				WantNext:  10*time.Second + 30*time.Minute, WantChanged: []string{svc2}},
		},
		{
			name:   "a refused delete: the error carries it, and Run retries it",
			before: []tick{mapBoth},
			do: func(h *harness) {
				h.net.delErr = &Error{Action: "DeletePortMapping", Code: CodeActionNotAuthorized, Description: "ActionNotAuthorized"}
			},
			keys:      []string{svc},
			wantCalls: []string{"gw1 delete TCP 80", "gw1 delete UDP 53"},
			wantErr: "upnp: drain default/web: mappings left on the gateway: " +
				"DeletePortMapping refused: UPnP error 606 (ActionNotAuthorized)\nDeletePortMapping refused: UPnP error 606 (ActionNotAuthorized)",
			wantCode:     CodeActionNotAuthorized,
			wantDraining: true,
			after: tick{At: 10 * time.Second, Do: func(h *harness) { h.net.delErr = nil },
				WantCalls: []string{"gw1 delete TCP 80", "gw1 delete UDP 53"}, WantNext: -1, WantChanged: []string{svc}},
		},
		{
			name: "the gateway is lost: Drain discovers it once more, whatever the backoff",
			before: []tick{
				mapBoth,
				{At: time.Second, Do: func(h *harness) { h.net.down = true; h.net.discErr[vip1] = noGW; h.m.Set(svc, vip1, nil) },
					WantCalls: []string{"gw1 delete TCP 80", "discover 198.18.0.150"},
					WantNext:  2 * time.Second, WantChanged: []string{svc}},
			},
			keys:         []string{svc},
			wantCalls:    []string{"discover 198.18.0.150"},
			wantErr:      "upnp: drain default/web: mappings left on the gateway: " + noGW.Error() + "\n" + noGW.Error(),
			wantDraining: true,
			after:        tick{At: 10 * time.Second, WantCalls: []string{"discover 198.18.0.150"}, WantNext: 14 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.run(tt.before)
			if tt.do != nil {
				tt.do(h)
			}
			err := h.m.Drain(context.Background(), tt.keys...)
			if errString(err) != tt.wantErr {
				t.Errorf("Drain = %v, want %q", err, tt.wantErr)
			}
			if got := ErrorCode(err); got != tt.wantCode {
				t.Errorf("UPnP error code in %v = %d, want %d", err, got, tt.wantCode)
			}
			if diff := cmp.Diff(tt.wantCalls, h.net.takeCalls()); diff != "" {
				t.Errorf("Drain's calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(none, viewOf(h.m.State(svc))); diff != "" && slices.Contains(tt.keys, svc) {
				t.Errorf("State(%s) after Drain (-want +got):\n%s", svc, diff)
			}
			if got := h.m.Draining(svc); got != tt.wantDraining {
				t.Errorf("Draining(%s) after Drain = %v, want %v", svc, got, tt.wantDraining)
			}
			slices.Sort(tt.after.WantChanged)
			h.run([]tick{tt.after})
		})
	}
}

// Drain while Run runs: it deletes, and Run does not map the key again.
func TestManagerDrainWhileRunning(t *testing.T) {
	r := startManager(t)
	r.m.Set(svc, vip1, []Mapping{tcp(vip1, 80), udp(vip1, 53)})
	r.waitChange(svc, "Set")
	r.waitArmed(t0.Add(30 * time.Minute))
	r.net.takeCalls()

	if err := r.m.Drain(context.Background(), svc); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	r.wantCalls("by Drain", []string{"gw1 delete TCP 80", "gw1 delete UDP 53"})
	r.wantState(svc, none)
	// Run steps on: a Set of another key shows what it does.
	r.m.Set(svc2, vip2, []Mapping{tcp(vip2, 8080)})
	r.waitChange(svc2, "Set of another key")
	r.wantCalls("after Drain", []string{"discover 198.18.0.151", "gw2 add TCP 8080->198.18.0.151:8080 1h0m0s", "gw2 ip"})
	r.wantState(svc, none)
}

// Drain after Run ended deletes what Run left in place.
func TestManagerDrainAfterRun(t *testing.T) {
	r := startManager(t)
	r.m.Set(svc, vip1, []Mapping{tcp(vip1, 80)})
	r.waitChange(svc, "Set")
	r.end()
	r.net.takeCalls()
	if err := r.m.Drain(context.Background(), svc); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	r.wantCalls("by Drain", []string{"gw1 delete TCP 80"})
	r.wantState(svc, none)
}

// A step of Run stuck on one gateway does not hold a Drain up: Drain cuts
// it short. An add that was cut short may have been made; Drain of its key
// deletes it too.
func TestManagerDrainCutsStepShort(t *testing.T) {
	r := startManager(t)
	r.m.Set(svc, vip1, []Mapping{tcp(vip1, 80)})
	r.waitChange(svc, "Set")
	r.net.mu.Lock()
	r.net.hang["add 198.18.0.151"] = true
	r.net.mu.Unlock()
	r.m.Set(svc2, vip2, []Mapping{tcp(vip2, 8080)})
	if got := r.waitHanging(); got != "gw2 add TCP 8080->198.18.0.151:8080 1h0m0s" {
		t.Fatalf("hanging call = %q", got)
	}
	r.net.takeCalls()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // failsafe only
	defer cancel()
	if err := r.m.Drain(ctx, svc); err != nil {
		t.Fatalf("Drain(%s) with a step stuck: %v", svc, err)
	}
	calls := r.net.takeCalls()
	if !slices.Contains(calls, "gw1 delete TCP 80") {
		t.Errorf("calls = %q, want gw1 delete TCP 80 among them", calls)
	}
	// Run steps again and hangs again on svc2's add.
	if got := r.waitHanging(); got != "gw2 add TCP 8080->198.18.0.151:8080 1h0m0s" {
		t.Fatalf("hanging call = %q", got)
	}
	r.net.takeCalls()
	if err := r.m.Drain(ctx, svc2); err != nil {
		t.Fatalf("Drain(%s) of a key whose add is stuck: %v", svc2, err)
	}
	r.wantCalls("by the second Drain", []string{"gw2 delete TCP 8080"})
	r.wantState(svc2, none)
}

// Drain is bounded by its context when the gateway does not answer; what
// it could not delete is left for Run, and the error says so.
func TestManagerDrainBoundedByContext(t *testing.T) {
	h := newHarness(t)
	h.run([]tick{{Do: set(svc, vip1, tcp(vip1, 80), udp(vip1, 53)),
		WantCalls: []string{"discover 198.18.0.150", "gw1 add TCP 80->198.18.0.150:80 1h0m0s", "gw1 add UDP 53->198.18.0.150:53 1h0m0s", "gw1 ip"},
		WantNext:  30 * time.Minute, WantChanged: []string{svc}}})
	h.net.hang["delete 198.18.0.150"] = true

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.m.Drain(ctx, svc) }()
	select {
	case call := <-h.net.hanging:
		if call != "gw1 delete TCP 80" {
			t.Errorf("hanging call = %q", call)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain sent no delete")
	}
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return after its context ended")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Drain = %v, want it to wrap context.Canceled", err)
	}
	want := "upnp: drain default/web: mappings left on the gateway: gw1 delete: context canceled\n" +
		"upnp: delete UDP 53 from 198.18.0.150: context canceled"
	if errString(err) != want {
		t.Errorf("Drain = %q, want %q", err, want)
	}
	if diff := cmp.Diff([]string{"gw1 delete TCP 80"}, h.net.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if !h.m.Draining(svc) {
		t.Errorf("Draining(%s) = false with both deletes left", svc)
	}
	// Run's next step deletes them once the gateway answers.
	delete(h.net.hang, "delete 198.18.0.150")
	h.run([]tick{{At: time.Second, WantCalls: []string{"gw1 delete TCP 80", "gw1 delete UDP 53"}, WantNext: -1, WantChanged: []string{svc}}})
}

// A Drain that cannot get its turn before its context ends still forgets
// the keys: Run deletes their mappings as after Set(key, local, nil).
func TestManagerDrainNoTurn(t *testing.T) {
	r := startManager(t)
	r.m.Set(svc, vip1, []Mapping{tcp(vip1, 80)})
	r.waitChange(svc, "Set")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Hold the turn as a stuck Drain would.
	done, err := r.m.turn.forDrain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.m.Drain(ctx, svc); !errors.Is(err, context.Canceled) {
		t.Errorf("Drain = %v, want it to wrap context.Canceled", err)
	}
	r.net.takeCalls()
	done()
	r.waitChange(svc, "the turn came back to Run")
	r.wantCalls("by Run", []string{"gw1 delete TCP 80"})
	r.wantState(svc, none)
}

func TestBackoff(t *testing.T) {
	m := NewManager(Config{RetryMin: time.Second, RetryMax: 5 * time.Second})
	var got []time.Duration
	var b time.Duration
	for range 5 {
		b = m.backoff(b)
		got = append(got, b)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
	d := NewManager(Config{})
	if d.cfg.RetryMin != 2*time.Second || d.cfg.RetryMax != 2*time.Minute {
		t.Errorf("default retry = %v..%v, want 2s..2m", d.cfg.RetryMin, d.cfg.RetryMax)
	}
}

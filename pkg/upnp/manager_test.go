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
	ip       netip.Addr
	gwNumber int
}

type fakeGW struct {
	n      *fakeNet
	name   string
	mapped map[portKey]Mapping
}

func newFakeNet() *fakeNet {
	return &fakeNet{discErr: map[netip.Addr]error{}, refuse: map[portKey]error{}, ip: extIP}
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
	return &fakeGW{n: f, name: fmt.Sprintf("gw%d", f.gwNumber), mapped: map[portKey]Mapping{}}, nil
}

var errDown = errors.New("dial tcp 198.18.0.1:5000: connect: no route to host")

func (g *fakeGW) ExternalIP(context.Context) (netip.Addr, error) {
	g.n.mu.Lock()
	defer g.n.mu.Unlock()
	g.n.logf("%s ip", g.name)
	if g.n.down {
		return netip.Addr{}, errDown
	}
	return g.n.ip, nil
}

func (g *fakeGW) Add(_ context.Context, m Mapping) error {
	g.n.mu.Lock()
	defer g.n.mu.Unlock()
	g.n.logf("%s add %s %d->%s %v", g.name, m.Protocol, m.ExternalPort, m.Internal, m.Lease)
	if g.n.down {
		return errDown
	}
	if err := g.n.refuse[keyOf(m)]; err != nil {
		return err
	}
	g.mapped[keyOf(m)] = m
	return nil
}

func (g *fakeGW) Delete(_ context.Context, protocol string, port uint16) error {
	g.n.mu.Lock()
	defer g.n.mu.Unlock()
	g.n.logf("%s delete %s %d", g.name, protocol, port)
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
	now     time.Time
	net     *fakeNet
	m       *Manager
	changed []string
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, now: t0, net: newFakeNet()}
	h.m = NewManager(Config{
		OnChange: func(key string) { h.changed = append(h.changed, key) },
		Discover: h.net.discover,
		RetryMin: time.Second,
		RetryMax: 8 * time.Second,
		now:      func() time.Time { return h.now },
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
		h.now = t0.Add(tk.At)
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

// Run: a Set wakes it, OnChange reports the result, and when its context
// ends it deletes everything it made and clears every State.
func TestManagerRun(t *testing.T) {
	f := newFakeNet()
	changed := make(chan string, 16)
	m := NewManager(Config{Discover: f.discover, OnChange: func(key string) { changed <- key }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	wait := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatalf("no OnChange after %s", what)
		}
	}
	m.Set(svc, vip1, []Mapping{tcp(vip1, 80), udp(vip1, 53)})
	wait("Set")
	if diff := cmp.Diff(mapped1, viewOf(m.State(svc))); diff != "" {
		t.Errorf("State (-want +got):\n%s", diff)
	}
	m.Set(svc2, vip2, []Mapping{tcp(vip2, 8080)})
	wait("second Set")
	if err := m.Run(ctx); err == nil {
		t.Errorf("a second concurrent Run did not fail")
	}
	f.takeCalls()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	want := []string{"gw1 delete TCP 80", "gw1 delete UDP 53", "gw2 delete TCP 8080"}
	if diff := cmp.Diff(want, f.takeCalls()); diff != "" {
		t.Errorf("calls when Run ends (-want +got):\n%s", diff)
	}
	for _, key := range []string{svc, svc2} {
		if diff := cmp.Diff(none, viewOf(m.State(key))); diff != "" {
			t.Errorf("State(%s) after Run (-want +got):\n%s", key, diff)
		}
	}
	select {
	case key := <-changed:
		t.Errorf("OnChange(%s) after Run ended", key)
	default:
	}
}

// When Run ends and a delete fails, Run says which mappings are left.
func TestManagerRunShutdownError(t *testing.T) {
	f := newFakeNet()
	changed := make(chan string, 16)
	m := NewManager(Config{Discover: f.discover, OnChange: func(key string) { changed <- key }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	m.Set(svc, vip1, []Mapping{tcp(vip1, 80)})
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnChange after Set")
	}
	f.mu.Lock()
	f.delErr = &Error{Action: "DeletePortMapping", Code: CodeActionNotAuthorized, Description: "ActionNotAuthorized"}
	f.mu.Unlock()
	cancel()
	err := <-done
	if err == nil || ErrorCode(err) != CodeActionNotAuthorized {
		t.Errorf("Run = %v, want an error carrying UPnP error 606", err)
	}
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

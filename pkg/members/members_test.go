package members

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestVouched: the holder rule, case by case, seen from node a.
func TestVouched(t *testing.T) {
	tests := []struct {
		name  string
		setup func(c *cluster)
		want  bool
	}{
		{name: "API down for all, every report fresh", setup: func(c *cluster) {
			c.setReachable(false, "a", "b", "c")
			c.rounds(3)
		}, want: true},
		{name: "this agent reaches the API, the others report it away", setup: func(c *cluster) {
			c.setReachable(false, "b", "c")
			c.rounds(3)
		}, want: true},
		{name: "this agent reaches the API, so do the others", setup: func(c *cluster) {
			c.rounds(3)
		}},
		{name: "all regained the API more than T ago", setup: func(c *cluster) {
			c.setReachable(false, "a", "b", "c")
			c.rounds(3)
			c.setReachable(true, "a", "b", "c")
			c.rounds(int(DefaultFresh/DefaultInterval) + 1)
		}},
		{name: "one agent reaches the API (partition of a)", setup: func(c *cluster) {
			c.setReachable(false, "a", "b")
			c.rounds(3)
		}},
		{name: "one agent silent longer than T", setup: func(c *cluster) {
			c.setReachable(false, "a", "b", "c")
			c.rounds(3)
			c.lan.drop[c.peers[2].Addr] = true
			c.rounds(int(DefaultFresh/DefaultInterval) + 1)
		}},
		{name: "one agent silent shorter than T", setup: func(c *cluster) {
			c.setReachable(false, "a", "b", "c")
			c.rounds(3)
			c.lan.drop[c.peers[2].Addr] = true
			c.rounds(int(DefaultFresh/DefaultInterval) - 3)
		}, want: true},
		{name: "an agent never heard", setup: func(c *cluster) {
			c.setReachable(false, "a", "b", "c")
			c.lan.drop[c.peers[2].Addr] = true
			c.rounds(3)
		}},
		{name: "a known agent runs without members", setup: func(c *cluster) {
			c.peers[1].Members = false
			c.agents["a"].SetPeers(c.peers)
			c.setReachable(false, "a", "b", "c")
			c.rounds(3)
		}},
		{name: "a known agent has another key", setup: func(c *cluster) {
			c.peers[2].Fingerprint = Fingerprint(otherKey)
			c.agents["a"].SetPeers(c.peers)
			c.setReachable(false, "a", "b", "c")
			c.rounds(3)
		}},
		{name: "an unlisted agent with the key says reachable", setup: func(c *cluster) {
			c.add("d", netip4(9), key)
			c.agents["d"].SetPeers(c.peers)
			c.setReachable(false, "a", "b", "c")
			c.rounds(3)
		}},
		{name: "peers not read from the API yet", setup: func(c *cluster) {
			c.agents["a"].enabled = false
			c.setReachable(false, "a", "b", "c")
			c.rounds(3)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, "a", "b", "c")
			tt.setup(c)
			since, ok := c.agents["a"].Vouched()
			if ok != tt.want {
				t.Fatalf("Vouched ok = %v, want %v; views %+v", ok, tt.want, c.agents["a"].Views())
			}
			if ok && c.clock.Now().Sub(since) >= DefaultFresh {
				t.Errorf("since %v is older than T", since)
			}
		})
	}
}

// TestVouchedEndsWhenAnAgentRegains: when b regains the API, a's vouch
// never counts from after it and ends within T, even if b's "reachable"
// report is lost; at once when it arrives while a itself cannot reach
// the API.
func TestVouchedEndsWhenAnAgentRegains(t *testing.T) {
	for _, tc := range []struct{ lost, selfBack bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		lost := tc.lost
		c := newCluster(t, "a", "b", "c")
		c.setReachable(false, "a", "b", "c")
		c.rounds(3)
		if _, ok := c.agents["a"].Vouched(); !ok {
			t.Fatal("not vouched during the outage")
		}
		regained := c.clock.Now()
		c.lan.drop[c.peers[1].Addr] = lost
		if tc.selfBack {
			c.setReachable(true, "a")
		}
		before := c.agents["a"].changes
		c.setReachable(true, "b")
		c.pump()
		if !lost && c.agents["a"].changes == before {
			t.Error("a 'reachable' report did not signal a change")
		}
		if _, ok := c.agents["a"].Vouched(); ok && !lost && !tc.selfBack {
			t.Error("still vouched after b's 'reachable' report while a cannot reach the API")
		}
		for c.clock.Now().Sub(regained) <= DefaultFresh {
			if since, ok := c.agents["a"].Vouched(); ok && !since.Before(regained) {
				t.Fatalf("%+v: vouched since %v, after b regained at %v", tc, since, regained)
			}
			c.rounds(1)
		}
		if _, ok := c.agents["a"].Vouched(); ok {
			t.Errorf("%+v: still vouched T after b regained the API", tc)
		}
	}
}

// TestWrongKeyIgnored: an agent without the key is never heard (its
// datagrams are counted as refused) and so never vouches.
func TestWrongKeyIgnored(t *testing.T) {
	c := newCluster(t, "a", "b")
	c.lan.mu.Lock()
	delete(c.lan.conns, c.peers[1].Addr)
	c.lan.mu.Unlock()
	c.add("b", c.peers[1].Addr, otherKey).SetPeers(c.peers)
	c.setReachable(false, "a", "b")
	c.rounds(3)
	if _, ok := c.agents["a"].Vouched(); ok {
		t.Error("vouched by an agent with another key")
	}
	if got := c.agents["a"].Rejected(); got != 3 {
		t.Errorf("refused %d datagrams, want 3", got)
	}
}

// TestReplayIgnored: a datagram sent again (or late) changes nothing.
func TestReplayIgnored(t *testing.T) {
	c := newCluster(t, "a", "b")
	c.setReachable(false, "a", "b")
	c.agents["b"].broadcast()
	old := c.lan.sent[len(c.lan.sent)-1]
	c.pump()
	c.setReachable(true, "b")
	c.pump()
	c.agents["a"].handle(old, c.peers[1].AddrPort())
	v := c.agents["a"].Views()
	if len(v) != 1 || !v[0].Reachable {
		t.Errorf("after a replay, a sees %+v, want b reachable", v)
	}
}

// TestEpoch: each regain of the API starts a new epoch at its time.
func TestEpoch(t *testing.T) {
	c := newCluster(t, "a")
	a := c.agents["a"]
	type state struct {
		Epoch     uint64
		From      time.Time
		Reachable bool
	}
	get := func() state { e, f, r := a.Epoch(); return state{e, f, r} }
	var got []state
	got = append(got, get())
	a.SetReachable(false)
	c.clock.Step(time.Second)
	got = append(got, get())
	a.SetReachable(true)
	regain := c.clock.Now()
	a.SetReachable(true)
	got = append(got, get())
	want := []state{{0, time.Time{}, true}, {0, time.Time{}, false}, {1, regain, true}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("epochs (-want +got):\n%s", diff)
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		in      string
		wantLen int
	}{
		{"MDEyMzQ1Njc4OWFiY2RlZg==", 16},
		{"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3", 24},
		{"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", 32},
		{"", 0},
		{"not base64!", 0},
		{"MDEyMzQ1Njc4OWFiY2Rl", 0}, // 15 bytes
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.in)
		if (err == nil) != (tt.wantLen > 0) || len(k) != tt.wantLen {
			t.Errorf("ParseKey(%q) = %d bytes, %v; want %d bytes", tt.in, len(k), err, tt.wantLen)
		}
	}
}

func FuzzOpen(f *testing.F) {
	s, err := newSealer(key)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := s.seal([]byte(`{"n":"b","i":"x","q":1}`))
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if plain, err := s.open(b); err == nil {
			_, _ = decode(plain)
		}
		_, _ = decode(b)
	})
}

// Each report carries the Services its sender holds and its view of the
// API; the receiver shows them.
func TestViews(t *testing.T) {
	c := newCluster(t, "a", "b")
	c.agents["a"].SetHeld([]string{"shop/web", "default/db"})
	c.setReachable(false, "a")
	c.rounds(2)
	got := c.agents["b"].Views()
	for i := range got {
		got[i].Since, got[i].Age = time.Time{}, 0
	}
	want := []View{{Node: "a", Known: true, Heard: true, Held: []string{"default/db", "shop/web"}, HeldCount: 2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("b's views (-want +got):\n%s", diff)
	}
}

// A regain sends "reachable" to every agent before the elector may write.
func TestReachableSentBeforeWritable(t *testing.T) {
	c := newCluster(t, "a", "b")
	a := c.agents["a"]
	a.SetReachable(false)
	var writableAtSend []bool
	c.lan.onWrite = func() { _, _, ok := a.Epoch(); writableAtSend = append(writableAtSend, ok) }
	a.SetReachable(true)
	c.lan.onWrite = nil
	if _, _, ok := a.Epoch(); !ok || len(writableAtSend) != 1 || writableAtSend[0] {
		t.Errorf("writable at the send: %v, after: %v; want one send while not writable, writable after", writableAtSend, ok)
	}
}

package upnp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/internal/clock/clocktest"
)

// fakePacketConn is an SSDP socket in memory: the test feeds what it reads
// and sees what it writes.
type fakePacketConn struct {
	in      chan []byte
	readErr chan error
	writes  chan string // "destination ST"
	closed  chan struct{}
	once    sync.Once
}

func newFakePacketConn() *fakePacketConn {
	return &fakePacketConn{in: make(chan []byte), readErr: make(chan error, 1), writes: make(chan string, 64), closed: make(chan struct{})}
}

func (c *fakePacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p), &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: ssdpPort}, nil
	case err := <-c.readErr:
		return 0, nil, err
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *fakePacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	st := ""
	for line := range strings.SplitSeq(string(b), "\r\n") {
		if v, ok := strings.CutPrefix(line, "ST: "); ok {
			st = v
		}
	}
	c.writes <- addr.String() + " " + st
	return len(b), nil
}

func (c *fakePacketConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *fakePacketConn) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip1, 40000))
}
func (c *fakePacketConn) SetDeadline(time.Time) error      { return nil }
func (c *fakePacketConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakePacketConn) SetWriteDeadline(time.Time) error { return nil }

func searchResponse(loc string) []byte {
	return []byte("HTTP/1.1 200 OK\r\nST: " + urnIP2 + "\r\nLOCATION: " + loc + "\r\n\r\n")
}

// discovery is one search on a fake socket and a fake clock.
type discovery struct {
	t     *testing.T
	pc    *fakePacketConn
	clock *clocktest.Fake
	igd   *fakeIGD
	gw    *Gateway
	err   error
	done  chan struct{}
}

func startDiscovery(t *testing.T, ctx context.Context) *discovery {
	d := &discovery{t: t, pc: newFakePacketConn(), clock: clocktest.New(t0), igd: &fakeIGD{services: []string{urnIP2}}, done: make(chan struct{})}
	s := searcher{clock: d.clock, pc: d.pc, local: vip1, hc: &http.Client{Transport: d.igd}}
	go func() {
		defer close(d.done)
		d.gw, d.err = s.run(ctx)
	}()
	t.Cleanup(func() { <-d.done })
	return d
}

// searches returns the next round of search requests.
func (d *discovery) searches() []string {
	d.t.Helper()
	var got []string
	for range searchTargets() {
		select {
		case w := <-d.pc.writes:
			got = append(got, w)
		case <-time.After(10 * time.Second):
			d.t.Fatalf("searches so far: %q", got)
		}
	}
	return got
}

func (d *discovery) wait() {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.t.Fatal("the search did not end")
	}
	select {
	case <-d.pc.closed:
	default:
		d.t.Error("the socket was left open")
	}
}

// The search goes out at once and again every searchInterval of the
// clock; every gateway that answers is tried once, and the first usable
// one is returned.
func TestSearch(t *testing.T) {
	d := startDiscovery(t, context.Background())
	round := []string{"239.255.255.250:1900 " + urnIP2, "239.255.255.250:1900 " + urnIP1, "239.255.255.250:1900 " + urnPPP1}
	if diff := cmp.Diff(round, d.searches()); diff != "" {
		t.Errorf("first searches (-want +got):\n%s", diff)
	}
	if !d.clock.Await(10*time.Second, func() bool { return slices.ContainsFunc(d.clock.Pending(), t0.Add(searchInterval).Equal) }) {
		t.Fatalf("no search is due at %v: %v", searchInterval, d.clock.Pending())
	}
	select {
	case w := <-d.pc.writes:
		t.Fatalf("searched again (%s) before the clock moved", w)
	default:
	}
	d.clock.Set(t0.Add(searchInterval))
	if diff := cmp.Diff(round, d.searches()); diff != "" {
		t.Errorf("searches after %v (-want +got):\n%s", searchInterval, diff)
	}

	bad := "http://198.18.0.1:5000/other.xml" // the fake answers 404
	d.pc.in <- searchResponse(bad)
	d.pc.in <- []byte("garbage")
	d.pc.in <- searchResponse(bad)
	d.pc.in <- searchResponse(location)
	d.wait()
	if d.err != nil {
		t.Fatalf("search: %v", d.err)
	}
	if d.gw.URL() != location || d.gw.Service() != urnIP2 || d.gw.Local() != vip1 {
		t.Errorf("gateway = %s %s from %s, want %s %s from %s", d.gw.URL(), d.gw.Service(), d.gw.Local(), location, urnIP2, vip1)
	}
}

func TestSearchEnds(t *testing.T) {
	readErr := errors.New("read udp: network is down")
	tests := []struct {
		name      string
		do        func(d *discovery, cancel context.CancelFunc)
		wantErr   string
		wantChain error
	}{
		{name: "ctx ends with no answer",
			do:        func(_ *discovery, cancel context.CancelFunc) { cancel() },
			wantErr:   "upnp: no UPnP gateway answered an SSDP search from 198.18.0.150: context canceled",
			wantChain: context.Canceled},
		{name: "ctx ends after unusable answers",
			do: func(d *discovery, cancel context.CancelFunc) {
				d.pc.in <- searchResponse("http://198.18.0.1:5000/other.xml")
				d.pc.in <- searchResponse("http://198.18.0.1:5000/other.xml") // read only once the first was tried
				cancel()
			},
			wantErr: "upnp: no usable UPnP gateway found from 198.18.0.150: upnp: gateway description http://198.18.0.1:5000/other.xml: HTTP 404 Not Found"},
		{name: "the socket fails",
			do:        func(d *discovery, _ context.CancelFunc) { d.pc.readErr <- readErr },
			wantErr:   "upnp: SSDP search from 198.18.0.150: read udp: network is down",
			wantChain: readErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			d := startDiscovery(t, ctx)
			d.searches()
			tt.do(d, cancel)
			d.wait()
			if errString(d.err) != tt.wantErr {
				t.Errorf("search = %v, want %q", d.err, tt.wantErr)
			}
			if tt.wantChain != nil && !errors.Is(d.err, tt.wantChain) {
				t.Errorf("search = %v, want it to wrap %v", d.err, tt.wantChain)
			}
		})
	}
}

package upnp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/huin/goupnp/dcps/internetgateway2"
	"golang.org/x/net/ipv4"

	"github.com/vigil-lb/vigil/internal/clock"
)

const (
	ssdpGroup = "239.255.255.250"
	ssdpPort  = 1900
	// searchInterval is how often Discover repeats its M-SEARCH requests
	// (SSDP is UDP; a gateway also delays its answer by up to MX seconds).
	searchInterval = time.Second
)

// searchTargets are the services Discover asks for, best first.
func searchTargets() []string {
	return []string{
		internetgateway2.URN_WANIPConnection_2,
		internetgateway2.URN_WANIPConnection_1,
		internetgateway2.URN_WANPPPConnection_1,
	}
}

// Discoverer finds gateways. The zero value is ready to use.
type Discoverer struct {
	// OpenSocket, when set, is called around the creation of every socket
	// the package opens (the SSDP socket of Discover and each TCP
	// connection of the returned Gateway, now and later); it must call open
	// and return its error. Tests use it to create the sockets inside a
	// network namespace.
	OpenSocket func(open func() error) error
	// Clock times the repeated searches. Default clock.Real{}.
	Clock clock.Clock
}

// Discover is Discoverer{}.Discover.
func Discover(ctx context.Context, local netip.Addr) (*Gateway, error) {
	return Discoverer{}.Discover(ctx, local)
}

// Discover looks for an Internet Gateway Device with SSDP from local: it
// binds a UDP socket to local:0, sends M-SEARCH requests for
// WANIPConnection:2, WANIPConnection:1 and WANPPPConnection:1 out of the
// interface that has local (repeated every second), and returns the first
// gateway whose description has one of those services. It searches until
// one is found or ctx ends, so ctx should carry a deadline (a few seconds).
// Only IPv4 is supported.
func (d Discoverer) Discover(ctx context.Context, local netip.Addr) (*Gateway, error) {
	local = local.Unmap()
	if !local.Is4() {
		return nil, fmt.Errorf("upnp: discover from %v: SSDP search needs an IPv4 address", local)
	}
	pc, err := d.listen(ctx, local)
	if err != nil {
		return nil, fmt.Errorf("upnp: SSDP socket on %s: %w", local, err)
	}
	clk := d.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	s := searcher{clock: clk, pc: pc, local: local, hc: httpClient(local, d.open)}
	return s.run(ctx)
}

// searcher is one SSDP search on an open socket.
type searcher struct {
	clock clock.Clock
	pc    net.PacketConn // closed by run
	local netip.Addr
	hc    *http.Client
}

// run sends the searches, now and every searchInterval, and tries each
// gateway that answers until one is usable or ctx ends. It closes the
// socket.
func (s searcher) run(ctx context.Context) (*Gateway, error) {
	locations, readErr, stop := s.read()
	defer stop()
	t := s.clock.NewTimer()
	defer t.Stop()
	t.Reset(s.clock.Now())
	tried := map[string]bool{}
	var failed []error
	for {
		select {
		case <-ctx.Done():
			return nil, noGateway(s.local, ctx.Err(), failed)
		case err := <-readErr:
			return nil, fmt.Errorf("upnp: SSDP search from %s: %w", s.local, err)
		case <-t.C():
			if err := s.search(); err != nil {
				return nil, err
			}
			t.Reset(s.clock.Now().Add(searchInterval))
		case loc := <-locations:
			if tried[loc] {
				continue
			}
			tried[loc] = true
			g, err := newGateway(ctx, s.hc, loc, s.local)
			if err != nil {
				failed = append(failed, err)
				continue
			}
			return g, nil
		}
	}
}

func (s searcher) search() error {
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ssdpGroup), ssdpPort))
	for _, st := range searchTargets() {
		if _, err := s.pc.WriteTo(searchRequest(st), dst); err != nil {
			return fmt.Errorf("upnp: SSDP search from %s: %w", s.local, err)
		}
	}
	return nil
}

// read starts the goroutine that reads the socket and passes on the
// LOCATION of every search response, or the read error that ended it.
// stop closes the socket and waits for the goroutine to end.
func (s searcher) read() (locations <-chan string, readErr <-chan error, stop func()) {
	locs := make(chan string)
	errc := make(chan error, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := s.pc.ReadFrom(buf)
			if err != nil {
				errc <- err
				return
			}
			loc, ok := parseSearchResponse(buf[:n])
			if !ok {
				continue
			}
			select {
			case locs <- loc:
			case <-done:
				return
			}
		}
	})
	return locs, errc, func() {
		close(done)
		s.pc.Close()
		wg.Wait()
	}
}

func noGateway(local netip.Addr, ctxErr error, failed []error) error {
	if len(failed) == 0 {
		return fmt.Errorf("upnp: no UPnP gateway answered an SSDP search from %s: %w", local, ctxErr)
	}
	return fmt.Errorf("upnp: no usable UPnP gateway found from %s: %w", local, errors.Join(failed...))
}

func (d Discoverer) open(open func() error) error {
	if d.OpenSocket != nil {
		return d.OpenSocket(open)
	}
	return open()
}

// listen opens the SSDP socket on local:0 with local's interface as the
// multicast interface (without it the route to 239.255.255.250 decides,
// which may be another interface than the VIP's).
func (d Discoverer) listen(ctx context.Context, local netip.Addr) (pc net.PacketConn, err error) {
	err = d.open(func() error {
		var lc net.ListenConfig
		c, err := lc.ListenPacket(ctx, "udp4", netip.AddrPortFrom(local, 0).String())
		if err != nil {
			return err
		}
		if ifi := interfaceWith(local); ifi != nil {
			if err := ipv4.NewPacketConn(c).SetMulticastInterface(ifi); err != nil {
				c.Close()
				return fmt.Errorf("multicast interface %s: %w", ifi.Name, err)
			}
		}
		pc = c
		return nil
	})
	return pc, err
}

// interfaceWith returns the interface that has addr (nil if none does or the
// interfaces cannot be read).
func interfaceWith(addr netip.Addr) *net.Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
					return &ifs[i]
				}
			}
		}
	}
	return nil
}

func searchRequest(st string) []byte {
	return []byte("M-SEARCH * HTTP/1.1\r\n" +
		"HOST: " + ssdpGroup + ":1900\r\n" +
		"MAN: \"ssdp:discover\"\r\n" +
		"MX: 1\r\n" +
		"ST: " + st + "\r\n" +
		"\r\n")
}

// parseSearchResponse returns the LOCATION of an SSDP search response.
func parseSearchResponse(b []byte) (string, bool) {
	// Some devices leave out the empty line that ends the headers.
	b = append(bytes.TrimRight(b, "\r\n"), "\r\n\r\n"...)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		return "", false
	}
	resp.Body.Close()
	loc := strings.TrimSpace(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusOK || loc == "" {
		return "", false
	}
	return loc, true
}

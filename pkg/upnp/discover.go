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
	"time"

	"github.com/huin/goupnp/dcps/internetgateway2"
	"golang.org/x/net/ipv4"
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
	defer pc.Close()
	// Wake a blocked read as soon as ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	hc := httpClient(local, d.open)
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ssdpGroup), ssdpPort))
	tried := map[string]bool{}
	var failed []error
	buf := make([]byte, 2048)
	var nextSearch time.Time
	for {
		if now := time.Now(); !now.Before(nextSearch) {
			for _, st := range searchTargets() {
				if _, err := pc.WriteTo(searchRequest(st), dst); err != nil {
					return nil, fmt.Errorf("upnp: SSDP search from %s: %w", local, err)
				}
			}
			nextSearch = now.Add(searchInterval)
		}
		deadline := nextSearch
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		_ = pc.SetReadDeadline(deadline)
		if err := ctx.Err(); err != nil {
			return nil, noGateway(local, err, failed)
		}
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if err := ctx.Err(); err != nil {
					return nil, noGateway(local, err, failed)
				}
				continue
			}
			return nil, fmt.Errorf("upnp: SSDP search from %s: %w", local, err)
		}
		loc, ok := parseSearchResponse(buf[:n])
		if !ok || tried[loc] {
			continue
		}
		tried[loc] = true
		g, err := newGateway(ctx, hc, loc, local)
		if err != nil {
			failed = append(failed, err)
			continue
		}
		return g, nil
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

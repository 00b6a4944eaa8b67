//go:build linux

package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DHCPv6 ports (RFC 8415 7.2).
const (
	clientPort6 = 546
	serverPort6 = 547
)

// udp6Conn is DHCPv6's conn: a UDP socket on [::]:546 bound to the
// interface (SO_BINDTODEVICE), so one per interface can exist at once.
// The kernel picks the interface's link-local address as the source; until
// that address has passed duplicate address detection (a second or so
// after a macvlan comes up) sends fail and the schedule retransmits.
type udp6Conn struct {
	pc     *net.UDPConn
	ifname string
	buf    []byte
}

func openConn6(ifi *net.Interface) (conn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name)
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp6", fmt.Sprintf("[::]:%d", clientPort6))
	if err != nil {
		return nil, fmt.Errorf("open UDP socket: %w", err)
	}
	return &udp6Conn{pc: pc.(*net.UDPConn), ifname: ifi.Name, buf: make([]byte, 1<<16)}, nil
}

func (c *udp6Conn) recv() ([]byte, net.HardwareAddr, error) {
	n, _, err := c.pc.ReadFromUDPAddrPort(c.buf)
	if err != nil {
		return nil, nil, err
	}
	return c.buf[:n], nil, nil
}

func (c *udp6Conn) send(payload []byte, _, dst netip.Addr, _ net.HardwareAddr) error {
	to := netip.AddrPortFrom(dst.WithZone(c.ifname), serverPort6)
	_, err := c.pc.WriteToUDPAddrPort(payload, to)
	return err
}

func (c *udp6Conn) interrupt() error { return c.pc.SetReadDeadline(time.Unix(1, 0)) }
func (c *udp6Conn) resume() error    { return c.pc.SetReadDeadline(time.Time{}) }

func (c *udp6Conn) close() error {
	if err := c.pc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

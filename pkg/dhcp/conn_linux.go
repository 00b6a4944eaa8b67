//go:build linux

package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

const sizeofAuxdata = int(unsafe.Sizeof(unix.TpacketAuxdata{}))

// packetConn is the real conn: an AF_PACKET/SOCK_DGRAM socket bound to the
// interface for IPv4, with a socket filter for UDP port 68. It works on an
// interface without any address, and can send IP-unicast frames (renewal,
// release) from an address the interface need not have.
type packetConn struct {
	pc  *packet.Conn
	rc  syscall.RawConn
	buf []byte // recv's; recv is called from one goroutine at a time
	oob []byte
}

func openConn(ifi *net.Interface) (conn, error) {
	prog, err := bpf.Assemble(filter())
	if err != nil {
		return nil, fmt.Errorf("assemble socket filter: %w", err)
	}
	// packet.Listen attaches the filter before it binds, so nothing else
	// is ever queued.
	pc, err := packet.Listen(ifi, packet.Datagram, unix.ETH_P_IP, &packet.Config{Filter: prog})
	if err != nil {
		return nil, fmt.Errorf("open packet socket: %w", err)
	}
	rc, err := pc.SyscallConn()
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	// PACKET_AUXDATA tells whether a packet's UDP checksum is still partial.
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_AUXDATA, 1)
	}); err != nil || serr != nil {
		pc.Close()
		return nil, fmt.Errorf("enable PACKET_AUXDATA: %w", errors.Join(err, serr))
	}
	return &packetConn{
		pc:  pc,
		rc:  rc,
		buf: make([]byte, 1<<16),
		oob: make([]byte, unix.CmsgSpace(sizeofAuxdata)),
	}, nil
}

func (c *packetConn) recv() ([]byte, net.HardwareAddr, error) {
	for {
		var (
			n, oobn, flags int
			from           unix.Sockaddr
			rerr           error
		)
		err := c.rc.Read(func(fd uintptr) bool {
			n, oobn, flags, from, rerr = unix.Recvmsg(int(fd), c.buf, c.oob, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return nil, nil, err
		}
		sll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || sll.Pkttype == unix.PACKET_OUTGOING || flags&unix.MSG_TRUNC != 0 {
			continue
		}
		payload, ok := parseFrame(c.buf[:n], verifyUDPChecksum(c.oob[:oobn]))
		if !ok {
			continue
		}
		halen := min(int(sll.Halen), len(sll.Addr))
		return slices.Clone(payload), net.HardwareAddr(slices.Clone(sll.Addr[:halen])), nil
	}
}

// verifyUDPChecksum tells from a packet's PACKET_AUXDATA whether its UDP
// checksum can and must be verified: not when the kernel already did
// (TP_STATUS_CSUM_VALID), nor when it is partial (TP_STATUS_CSUMNOTREADY:
// veth, macvlan, local traffic with checksum offload).
func verifyUDPChecksum(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return true
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA ||
			len(m.Data) < sizeofAuxdata {
			continue
		}
		status := binary.NativeEndian.Uint32(m.Data) // tp_status comes first
		return status&(unix.TP_STATUS_CSUMNOTREADY|unix.TP_STATUS_CSUM_VALID) == 0
	}
	return true
}

func (c *packetConn) send(payload []byte, src, dst netip.Addr, dstMAC net.HardwareAddr) error {
	if dstMAC == nil {
		dstMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	_, err := c.pc.WriteTo(buildFrame(src, dst, payload), &packet.Addr{HardwareAddr: dstMAC})
	return err
}

// interrupt makes a blocked recv return, and every later one until resume.
func (c *packetConn) interrupt() error { return c.pc.SetReadDeadline(time.Unix(1, 0)) }
func (c *packetConn) resume() error    { return c.pc.SetReadDeadline(time.Time{}) }
func (c *packetConn) close() error     { return c.pc.Close() }

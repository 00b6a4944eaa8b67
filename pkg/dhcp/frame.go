package dhcp

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/net/bpf"
)

// UDP ports of DHCPv4 (RFC 2131).
const (
	clientPort = 68
	serverPort = 67
)

const (
	ipv4HeaderLen  = 20
	udpHeaderLen   = 8
	protoUDP       = 17
	flagsFragments = 0x3fff // IPv4 MF flag and fragment offset
)

// buildFrame returns an IPv4 packet (no link-layer header) that carries
// payload in a UDP datagram from src:68 to dst:67, with both checksums
// computed in full.
func buildFrame(src, dst netip.Addr, payload []byte) []byte {
	return udpFrame(src, dst, clientPort, serverPort, payload)
}

func udpFrame(src, dst netip.Addr, srcPort, dstPort uint16, payload []byte) []byte {
	b := make([]byte, ipv4HeaderLen+udpHeaderLen+len(payload))
	ip := b[:ipv4HeaderLen]
	ip[0] = 0x45 // version 4, 5 words of header
	binary.BigEndian.PutUint16(ip[2:], uint16(len(b)))
	ip[8] = 64 // TTL
	ip[9] = protoUDP
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], ^fold(onesSum(ip, 0)))

	udp := b[ipv4HeaderLen:]
	binary.BigEndian.PutUint16(udp[0:], srcPort)
	binary.BigEndian.PutUint16(udp[2:], dstPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[udpHeaderLen:], payload)
	sum := ^fold(onesSum(udp, pseudoHeaderSum(s, d, len(udp))))
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(udp[6:], sum)
	return b
}

// parseFrame returns the UDP payload of pkt, an IPv4 packet without
// link-layer header, if it is an unfragmented UDP datagram to port 68 with
// a valid IPv4 header. The UDP checksum is verified only when verifyUDP is
// set and the sender filled it in: a packet socket hands us locally
// generated or virtual-device packets (veth, macvlan, virtio with offload)
// with a partial checksum that only the kernel knows to be fine, and
// tells us so (TP_STATUS_CSUMNOTREADY); the caller clears verifyUDP then.
func parseFrame(pkt []byte, verifyUDP bool) ([]byte, bool) {
	if len(pkt) < ipv4HeaderLen || pkt[0]>>4 != 4 {
		return nil, false
	}
	hlen := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if hlen < ipv4HeaderLen || total < hlen+udpHeaderLen || total > len(pkt) {
		return nil, false
	}
	pkt = pkt[:total] // drop link-layer padding
	if fold(onesSum(pkt[:hlen], 0)) != 0xffff {
		return nil, false // the IPv4 header checksum is never offloaded
	}
	if pkt[9] != protoUDP || binary.BigEndian.Uint16(pkt[6:])&flagsFragments != 0 {
		return nil, false
	}
	udp := pkt[hlen:]
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	if binary.BigEndian.Uint16(udp[2:]) != clientPort || ulen < udpHeaderLen || ulen > len(udp) {
		return nil, false
	}
	udp = udp[:ulen]
	if verifyUDP && binary.BigEndian.Uint16(udp[6:]) != 0 {
		src, dst := [4]byte(pkt[12:16]), [4]byte(pkt[16:20])
		if fold(onesSum(udp, pseudoHeaderSum(src, dst, ulen))) != 0xffff {
			return nil, false
		}
	}
	return udp[udpHeaderLen:], true
}

// pseudoHeaderSum is the ones' complement sum of the IPv4 pseudo header of
// a UDP datagram of length n.
func pseudoHeaderSum(src, dst [4]byte, n int) uint64 {
	sum := onesSum(src[:], 0)
	sum = onesSum(dst[:], sum)
	return sum + protoUDP + uint64(n)
}

// onesSum adds b as big-endian 16-bit words to sum (RFC 1071).
func onesSum(b []byte, sum uint64) uint64 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint64(b[0])<<8 | uint64(b[1])
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

// fold folds a ones' complement sum to 16 bits.
func fold(sum uint64) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// filter is the socket filter of the client's packet socket. A packet
// socket sees every IPv4 packet of its interface, and the interface carries
// a VIP that may serve heavy traffic: only unfragmented UDP datagrams to
// port 68 reach user space. The program runs on the IPv4 header (SOCK_DGRAM).
func filter() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 9, Size: 1},                                   // 0: protocol
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoUDP, SkipTrue: 6},      // 1: not UDP: drop
		bpf.LoadAbsolute{Off: 6, Size: 2},                                   // 2: flags, fragment offset
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: flagsFragments, SkipTrue: 4}, // 3: fragment: drop
		bpf.LoadMemShift{Off: 0},                                            // 4: X = header length
		bpf.LoadIndirect{Off: 2, Size: 2},                                   // 5: UDP destination port
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: clientPort, SkipFalse: 1},      // 6
		bpf.RetConstant{Val: 1 << 18},                                       // 7: accept
		bpf.RetConstant{Val: 0},                                             // 8: drop
	}
}

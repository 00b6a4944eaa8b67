package dhcp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/bpf"
)

// rfc1071 is a plain 32-bit Internet checksum, independent of onesSum/fold.
func rfc1071(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func TestBuildFrame(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.0.222"), netip.MustParseAddr("198.18.0.1")
	payload := []byte("odd-length payload")
	b := buildFrame(src, dst, payload)

	if rfc1071(b[:20]) != 0 {
		t.Error("IPv4 header checksum does not verify")
	}
	pseudo := append(append(append([]byte{}, b[12:20]...), 0, protoUDP), byte(len(b[20:])>>8), byte(len(b[20:])))
	if rfc1071(append(pseudo, b[20:]...)) != 0 {
		t.Error("UDP checksum does not verify")
	}
	type fields struct {
		Version, IHL, TTL, Proto byte
		Total, SrcPort, DstPort  uint16
		UDPLen                   uint16
		Src, Dst                 netip.Addr
		Payload                  string
	}
	got := fields{
		Version: b[0] >> 4, IHL: b[0] & 0xf, TTL: b[8], Proto: b[9],
		Total:   binary.BigEndian.Uint16(b[2:]),
		SrcPort: binary.BigEndian.Uint16(b[20:]), DstPort: binary.BigEndian.Uint16(b[22:]),
		UDPLen: binary.BigEndian.Uint16(b[24:]),
		Src:    netip.AddrFrom4([4]byte(b[12:16])), Dst: netip.AddrFrom4([4]byte(b[16:20])),
		Payload: string(b[28:]),
	}
	want := fields{Version: 4, IHL: 5, TTL: 64, Proto: 17, Total: uint16(28 + len(payload)), SrcPort: 68, DstPort: 67,
		UDPLen: uint16(8 + len(payload)), Src: src, Dst: dst, Payload: string(payload)}
	if diff := cmp.Diff(want, got, cmpNetip); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

// reply is a server-to-client datagram as seen by the packet socket.
func reply(payload []byte) []byte {
	return udpFrame(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.222"), 67, 68, payload)
}

// fixIPChecksum recomputes the IPv4 header checksum after a test edit.
func fixIPChecksum(b []byte) []byte {
	hlen := int(b[0]&0xf) * 4
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], rfc1071(b[:hlen]))
	return b
}

func TestParseFrameAndFilter(t *testing.T) {
	payload := []byte("a DHCP reply")
	tests := []struct {
		name      string
		pkt       func() []byte
		verifyUDP bool
		want      bool // parseFrame returns payload
		filter    bool // the socket filter accepts it
	}{
		{"valid", func() []byte { return reply(payload) }, true, true, true},
		{"Ethernet padding after the datagram", func() []byte { return append(reply(payload), 0, 0, 0, 0, 0, 0) }, true, true, true},
		{"bad UDP checksum, verified", func() []byte { b := reply(payload); b[26] ^= 0xff; return b }, true, false, true},
		{"partial UDP checksum, not verified (CSUMNOTREADY)", func() []byte { b := reply(payload); b[26] ^= 0xff; return b }, false, true, true},
		{"no UDP checksum (0)", func() []byte { b := reply(payload); b[26], b[27] = 0, 0; return b }, true, true, true},
		{"bad IPv4 header checksum", func() []byte { b := reply(payload); b[10] ^= 0xff; return b }, false, false, true},
		{"IPv4 options", func() []byte {
			b := reply(payload)
			b = append(append(append([]byte{}, b[:20]...), 1, 1, 1, 0), b[20:]...) // NOP NOP NOP EOL
			b[0] = 0x46
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			return fixIPChecksum(b)
		}, true, true, true},
		{"more fragments", func() []byte { b := reply(payload); b[6] |= 0x20; return fixIPChecksum(b) }, false, false, false},
		{"fragment offset", func() []byte { b := reply(payload); b[7] = 1; return fixIPChecksum(b) }, false, false, false},
		{"to port 67", func() []byte {
			return udpFrame(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.222"), 68, 67, payload)
		}, true, false, false},
		{"TCP", func() []byte { b := reply(payload); b[9] = 6; return fixIPChecksum(b) }, false, false, false},
		{"truncated", func() []byte { b := reply(payload); return b[:len(b)-1] }, false, false, true},
		{"UDP length beyond the packet", func() []byte {
			b := reply(payload)
			binary.BigEndian.PutUint16(b[24:], uint16(len(b)))
			return b
		}, false, false, true},
		{"IPv6", func() []byte { b := reply(payload); b[0] = 0x65; return b }, false, false, true},
	}
	vm, err := bpf.NewVM(filter())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseFrame(tc.pkt(), tc.verifyUDP)
			if ok != tc.want || (ok && !bytes.Equal(got, payload)) {
				t.Errorf("parseFrame = %q, %t; want %t", got, ok, tc.want)
			}
			n, err := vm.Run(tc.pkt())
			if err != nil {
				t.Fatal(err)
			}
			if (n > 0) != tc.filter {
				t.Errorf("filter returned %d, want accept=%t", n, tc.filter)
			}
		})
	}
}

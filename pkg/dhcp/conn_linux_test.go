//go:build linux

package dhcp

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// auxdata returns a control message as recvmsg fills it for PACKET_AUXDATA.
func auxdata(level, typ int32, status uint32) []byte {
	b := make([]byte, unix.CmsgSpace(sizeofAuxdata))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(sizeofAuxdata))
	binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], status)
	return b
}

func TestVerifyUDPChecksum(t *testing.T) {
	tests := []struct {
		name string
		oob  []byte
		want bool
	}{
		{"no control message", nil, true},
		{"complete checksum", auxdata(unix.SOL_PACKET, unix.PACKET_AUXDATA, unix.TP_STATUS_USER), true},
		{"partial checksum (veth, offload)", auxdata(unix.SOL_PACKET, unix.PACKET_AUXDATA, unix.TP_STATUS_CSUMNOTREADY), false},
		{"verified by the kernel", auxdata(unix.SOL_PACKET, unix.PACKET_AUXDATA, unix.TP_STATUS_CSUM_VALID), false},
		{"another control message", auxdata(unix.SOL_SOCKET, unix.SCM_TIMESTAMP, unix.TP_STATUS_CSUMNOTREADY), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := verifyUDPChecksum(tc.oob); got != tc.want {
				t.Errorf("verifyUDPChecksum = %t, want %t", got, tc.want)
			}
		})
	}
}

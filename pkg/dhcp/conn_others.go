//go:build !linux

package dhcp

import (
	"errors"
	"net"
)

func openConn(*net.Interface) (conn, error) {
	return nil, errors.New("DHCP client needs Linux (AF_PACKET)")
}

func openConn6(*net.Interface) (conn, error) {
	return nil, errors.New("DHCPv6 client needs Linux (SO_BINDTODEVICE)")
}

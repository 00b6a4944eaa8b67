package lbconfig

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ParseKubeVIPPeers parses kube-vip's bgp_peers: a comma list of
// <address>:<AS>[:<password>[:<multihop>[:<port>[:<mpbgp options>[:<bfd>]]]]]
// with IPv6 addresses in brackets and <bfd> = enable;rx-ms;tx-ms;multiplier.
// Unlike kube-vip, <port> is used, and BFD intervals are milliseconds.
func ParseKubeVIPPeers(s string) ([]Peer, error) {
	var out []Peer
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := parseKubeVIPPeer(f)
		if err != nil {
			return nil, fmt.Errorf("peer %d (%q): %w", i+1, f, err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("no peer")
	}
	return out, nil
}

func parseKubeVIPPeer(s string) (Peer, error) {
	addr, rest, err := cutAddress(s)
	if err != nil {
		return Peer{}, err
	}
	fields := strings.Split(rest, ":")
	if len(fields) < 1 || fields[0] == "" {
		return Peer{}, errors.New("missing <AS> (want <address>:<AS>)")
	}
	if len(fields) > 6 {
		return Peer{}, fmt.Errorf("%d fields after the address, at most 6 (<AS>:<password>:<multihop>:<port>:<mpbgp>:<bfd>)", len(fields))
	}
	p := Peer{Name: addr.String(), Address: addr}
	for i, parse := range peerFields {
		if i < len(fields) {
			if err := parse(&p, strings.TrimSpace(fields[i])); err != nil {
				return Peer{}, err
			}
		}
	}
	return p, p.Validate()
}

// cutAddress splits the address off a peer: "[v6]:rest" or "v4:rest".
func cutAddress(s string) (netip.Addr, string, error) {
	var raw, rest string
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, "", errors.New("no ] after an IPv6 address")
		}
		raw, rest = s[1:end], strings.TrimPrefix(s[end+1:], ":")
	} else {
		raw, rest, _ = strings.Cut(s, ":")
	}
	a, err := netip.ParseAddr(raw)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, "", fmt.Errorf("address %q: not an IP address (IPv6 goes in brackets)", raw)
	}
	return a.Unmap(), rest, nil
}

// peerFields parse the fields after the address, in order.
var peerFields = []func(*Peer, string) error{
	func(p *Peer, v string) error { return parseASN(&p.ASN, v) },
	func(p *Peer, v string) error { p.Password = v; return nil },
	func(p *Peer, v string) error { return parseBool(&p.EBGPMultiHop, "multihop", v) },
	parsePort,
	parseMPBGP,
	parseBFD,
}

func parseASN(dst *uint32, v string) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 {
		return fmt.Errorf("AS %q: not a number from 1 to 4294967295", v)
	}
	*dst = uint32(n)
	return nil
}

func parseBool(dst *bool, what, v string) error {
	if v == "" {
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%s %q: not true or false", what, v)
	}
	*dst = b
	return nil
}

func parsePort(p *Peer, v string) error {
	if v == "" {
		return nil
	}
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("port %q: not 1-65535", v)
	}
	p.Port = uint16(n)
	return nil
}

// parseMPBGP refuses kube-vip's MP-BGP next-hop options: vigil always
// announces with next hop self.
func parseMPBGP(_ *Peer, v string) error {
	if v == "" {
		return nil
	}
	return fmt.Errorf("mpbgp options %q: not supported (vigil announces next hop self for IPv4 and IPv6)", v)
}

// parseBFD reads enable;rx-ms;tx-ms;multiplier.
func parseBFD(p *Peer, v string) error {
	if v == "" {
		return nil
	}
	f := strings.Split(v, ";")
	if len(f) != 4 {
		return fmt.Errorf("bfd %q: want enable;receive-ms;transmit-ms;multiplier", v)
	}
	var on bool
	if err := parseBool(&on, "bfd enable", f[0]); err != nil || !on {
		return err
	}
	var ms [2]uint64
	for i, s := range f[1:3] {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("bfd interval %q: not a number of milliseconds", s)
		}
		ms[i] = n
	}
	mult, err := strconv.ParseUint(f[3], 10, 8)
	if err != nil {
		return fmt.Errorf("bfd multiplier %q: not 2-255", f[3])
	}
	p.BFD = &BFD{ReceiveInterval: time.Duration(ms[0]) * time.Millisecond, TransmitInterval: time.Duration(ms[1]) * time.Millisecond, DetectMultiplier: uint32(mult)}
	return nil
}

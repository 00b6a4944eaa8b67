package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-lb/vigil/internal/netnstest"
)

// DHCPOptions configures the gateway's dnsmasq.
type DHCPOptions struct {
	LeaseTime time.Duration // default (and dnsmasq's minimum) 2 minutes
}

// DHCP ranges served on the LAN (DHCPv4 and DHCPv6).
var (
	DHCPFirst  = netip.MustParseAddr("198.18.0.200")
	DHCPLast   = netip.MustParseAddr("198.18.0.250")
	DHCP6First = netip.MustParseAddr("fd00:1ab::200")
	DHCP6Last  = netip.MustParseAddr("fd00:1ab::2ff")
)

// StartDHCP runs dnsmasq as DHCPv4 and DHCPv6 server (DNS and router
// advertisements off) on the gateway's LAN side.
func (n *Network) StartDHCP(ctx context.Context, opts DHCPOptions) (*Proc, error) {
	if opts.LeaseTime == 0 {
		opts.LeaseTime = 2 * time.Minute
	}
	lease := int(opts.LeaseTime.Seconds())
	p, err := n.Start(n.Gateway, "dnsmasq", nil, "dnsmasq", "--keep-in-foreground",
		"--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll", "--port=0",
		"--interface=eth0", "--except-interface=lo", "--bind-interfaces",
		fmt.Sprintf("--dhcp-range=%s,%s,255.255.255.0,%ds", DHCPFirst, DHCPLast, lease),
		fmt.Sprintf("--dhcp-range=%s,%s,64,%ds", DHCP6First, DHCP6Last, lease),
		"--dhcp-authoritative", "--dhcp-rapid-commit", "--no-ping",
		"--dhcp-leasefile="+n.LeaseFile(), "--pid-file="+filepath.Join(n.Dir, "dnsmasq.pid"),
		"--user=root", "--group=root", "--log-dhcp", "--log-facility=-")
	if err != nil {
		return nil, err
	}
	// dnsmasq binds at once; wait until its sockets exist.
	if err := WaitFor(ctx, 5*time.Second, func() bool {
		out, _ := runIn(ctx, n.Gateway.NS, "ss", "-Hulpn", "sport = :67 or sport = :547")
		return strings.Count(out, "dnsmasq") >= 2
	}); err != nil {
		return nil, fmt.Errorf("dnsmasq not listening: %w\n%s", err, p.Log())
	}
	return p, nil
}

// LeaseFile is dnsmasq's lease database.
func (n *Network) LeaseFile() string { return filepath.Join(n.Dir, "dnsmasq.leases") }

// Lease is one line of dnsmasq's lease file.
type Lease struct {
	Expiry   time.Time
	MAC      string // DHCPv6: the IAID
	IP       netip.Addr
	Hostname string
}

// Leases reads dnsmasq's current leases.
func (n *Network) Leases() ([]Lease, error) {
	b, err := os.ReadFile(n.LeaseFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Lease
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		exp, _ := strconv.ParseInt(f[0], 10, 64)
		ip, err := netip.ParseAddr(f[2])
		if err != nil {
			continue
		}
		host := f[3]
		if host == "*" {
			host = ""
		}
		out = append(out, Lease{Expiry: time.Unix(exp, 0), MAC: f[1], IP: ip, Hostname: host})
	}
	return out, nil
}

// UPnPOptions configures the gateway's miniupnpd.
type UPnPOptions struct {
	Secure bool // secure_mode=yes: only map to the requester's own address
}

// UPnPPort is miniupnpd's HTTP (SOAP) port on the gateway's LAN address.
const UPnPPort = 5000

// UPnPRootDesc is the IGD description URL on the LAN.
func (n *Network) UPnPRootDesc() string {
	return fmt.Sprintf("http://%s:%d/rootDesc.xml", n.Gateway.IPv4, UPnPPort)
}

// StartUPnP runs miniupnpd (nftables backend) on the gateway, with the
// nftables tables it expects and a STUN responder on the WAN host so that it
// accepts the reserved 198.19.0.1 external address.
//
// Called again after the returned Proc was stopped (a gateway restart), it
// only starts miniupnpd again: the STUN responder, the nftables tables and
// the configuration of the first call stay.
func (n *Network) StartUPnP(ctx context.Context, opts UPnPOptions) (*Proc, error) {
	n.mu.Lock()
	conf := n.upnpConf
	n.mu.Unlock()
	if conf == "" {
		var err error
		if conf, err = n.setupUPnP(ctx, opts); err != nil {
			return nil, err
		}
	}
	p, err := n.Start(n.Gateway, "miniupnpd", nil, "miniupnpd", "-d", "-f", conf,
		"-P", filepath.Join(n.Dir, "miniupnpd.pid"))
	if err != nil {
		return nil, err
	}
	if err := WaitFor(ctx, 5*time.Second, func() bool {
		out, _ := runIn(ctx, n.Gateway.NS, "ss", "-Htlpn", fmt.Sprintf("sport = :%d", UPnPPort))
		return strings.Contains(out, "miniupnpd")
	}); err != nil {
		return nil, fmt.Errorf("miniupnpd not listening: %w\n%s", err, p.Log())
	}
	return p, nil
}

// setupUPnP starts the STUN responder, loads the nftables tables miniupnpd
// expects and writes its configuration (returning the file).
func (n *Network) setupUPnP(ctx context.Context, opts UPnPOptions) (string, error) {
	stun, err := startSTUN(n.WAN.NS, netip.AddrPortFrom(n.WAN.IPv4, 3478))
	if err != nil {
		return "", fmt.Errorf("STUN responder: %w", err)
	}
	n.onClose(stun.Close)
	if err := nft(ctx, n.Gateway.NS, `table inet filter {
	chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
	chain miniupnpd { }
	chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
	chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; oifname "eth1" masquerade; }
	chain prerouting_miniupnpd { }
	chain postrouting_miniupnpd { }
}`); err != nil {
		return "", err
	}
	secure := "no"
	if opts.Secure {
		secure = "yes"
	}
	conf := filepath.Join(n.Dir, "miniupnpd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`ext_ifname=eth1
listening_ip=eth0
http_port=%d
enable_upnp=yes
enable_natpmp=yes
secure_mode=%s
system_uptime=yes
uuid=3d3cec3a-8cf0-11e0-98ee-001a6b5e1a5c
ext_perform_stun=yes
ext_stun_host=%s
ext_stun_port=3478
allow 1-65535 198.18.0.0/24 1-65535
deny 0-65535 0.0.0.0/0 0-65535
`, UPnPPort, secure, n.WAN.IPv4)), 0o644); err != nil {
		return "", err
	}
	n.mu.Lock()
	n.upnpConf = conf
	n.mu.Unlock()
	return conf, nil
}

// Mapping is one UPnP port mapping on the gateway.
type Mapping struct {
	Proto        string
	ExternalPort uint16
	Internal     netip.AddrPort
	Description  string
}

var upnpcLine = regexp.MustCompile(`^\s*\d+\s+(TCP|UDP)\s+(\d+)->(\S+):(\d+)\s+'([^']*)'`)

// Mappings lists the gateway's port mappings (upnpc -l, asked from the
// client).
func (n *Network) Mappings(ctx context.Context) ([]Mapping, error) {
	out, err := runIn(ctx, n.Client.NS, "upnpc", "-u", n.UPnPRootDesc(), "-l")
	if err != nil {
		return nil, err
	}
	var ms []Mapping
	for _, line := range strings.Split(out, "\n") {
		m := upnpcLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ext, _ := strconv.Atoi(m[2])
		ip, err := netip.ParseAddr(m[3])
		if err != nil {
			continue
		}
		port, _ := strconv.Atoi(m[4])
		ms = append(ms, Mapping{Proto: m[1], ExternalPort: uint16(ext), Internal: netip.AddrPortFrom(ip, uint16(port)), Description: m[5]})
	}
	return ms, nil
}

// stunServer answers STUN Binding Requests with the request's source address
// (RFC 5389 XOR-MAPPED-ADDRESS and the classic MAPPED-ADDRESS).
type stunServer struct {
	pc   net.PacketConn
	done chan struct{}
}

func startSTUN(ns string, at netip.AddrPort) (*stunServer, error) {
	var pc net.PacketConn
	if err := netnstest.InNS(ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", at.String())
		return err
	}); err != nil {
		return nil, err
	}
	s := &stunServer{pc: pc, done: make(chan struct{})}
	go s.serve()
	return s, nil
}

const stunMagic = 0x2112A442

func (s *stunServer) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 20 || binary.BigEndian.Uint16(buf[0:2]) != 0x0001 {
			continue
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok || ua.IP.To4() == nil {
			continue
		}
		_, _ = s.pc.WriteTo(stunResponse(buf[:20], ua.IP.To4(), uint16(ua.Port)), from)
	}
}

func stunResponse(req []byte, ip net.IP, port uint16) []byte {
	attr := func(typ uint16, xor bool) []byte {
		a := make([]byte, 12)
		binary.BigEndian.PutUint16(a[0:2], typ)
		binary.BigEndian.PutUint16(a[2:4], 8)
		a[5] = 0x01 // IPv4
		p, addr := port, binary.BigEndian.Uint32(ip)
		if xor {
			p ^= stunMagic >> 16
			addr ^= stunMagic
		}
		binary.BigEndian.PutUint16(a[6:8], p)
		binary.BigEndian.PutUint32(a[8:12], addr)
		return a
	}
	body := append(attr(0x0001, false), attr(0x0020, true)...)
	resp := make([]byte, 20, 20+len(body))
	binary.BigEndian.PutUint16(resp[0:2], 0x0101) // Binding Success Response
	binary.BigEndian.PutUint16(resp[2:4], uint16(len(body)))
	copy(resp[4:20], req[4:20]) // magic cookie + transaction ID
	return append(resp, body...)
}

func (s *stunServer) Close() {
	s.pc.Close()
	<-s.done
}

// WaitFor polls cond every 20 ms until it holds or the timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

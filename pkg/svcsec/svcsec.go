package svcsec

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family inet) the guard owns.
const TableName = "vigil_svcsec"

// Port is one port a Service exposes: an IP protocol number (6 TCP, 17
// UDP, 132 SCTP) and a port.
type Port struct {
	Proto uint8
	Port  uint16
}

// Guard keeps the node's nftables table equal to the VIPs guarded. It is
// safe for concurrent use.
type Guard struct {
	mu   sync.Mutex
	conn *nftables.Conn
}

// New returns a Guard working through conn (and so in conn's network
// namespace). It changes nothing until Set.
func New(conn *nftables.Conn) *Guard { return &Guard{conn: conn} }

// Set makes exactly the VIPs in allowed guarded: traffic to one of them is
// dropped unless it is ICMP/ICMPv6 or to one of its ports.
func (g *Guard) Set(allowed map[netip.Addr][]Port) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	g.conn.AddTable(t)
	g.conn.DelTable(t) // the add makes this delete succeed if there was none
	if len(allowed) > 0 {
		g.conn.AddTable(t)
		c := g.conn.AddChain(&nftables.Chain{
			Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-150),
		})
		for _, vip := range sorted(allowed) {
			for _, r := range Rules(vip, allowed[vip]) {
				g.conn.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: r})
			}
		}
	}
	if err := g.conn.Flush(); err != nil {
		return fmt.Errorf("svcsec: write inet %s: %w", TableName, err)
	}
	return nil
}

func sorted(m map[netip.Addr][]Port) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// Rules are the expressions of vip's rules, in order: one accept per
// port, one for ICMP, one drop.
func Rules(vip netip.Addr, ports []Port) [][]expr.Any {
	vip = vip.Unmap()
	icmp := uint8(unix.IPPROTO_ICMP)
	if vip.Is6() {
		icmp = unix.IPPROTO_ICMPV6
	}
	var out [][]expr.Any
	for _, p := range ports {
		out = append(out, append(toVIP(vip),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p.Proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, p.Port)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		))
	}
	out = append(out, append(toVIP(vip),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{icmp}},
		&expr.Verdict{Kind: expr.VerdictAccept},
	))
	return append(out, append(toVIP(vip), &expr.Verdict{Kind: expr.VerdictDrop}))
}

// toVIP matches packets of vip's family addressed to vip.
func toVIP(vip netip.Addr) []expr.Any {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if vip.Is6() {
		proto, off, n = unix.NFPROTO_IPV6, 24, 16
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: vip.AsSlice()},
	}
}

package arpguard

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// Names of the nftables objects the guard owns.
const (
	TableName = "vigil"
	ChainName = "output"
	SetName   = "bgp_vips"
)

// Comments on the guard's rules, in chain order. Set rebuilds the table
// when the chain holds anything else, so changing a rule means changing its
// comment (bump the version).
const (
	commentReply   = "vigil arpguard v1: no ARP reply for a BGP-only VIP"
	commentRequest = "vigil arpguard v1: ARP request from a BGP-only VIP sent as a probe"
)

// hookARPOut is NF_ARP_OUT (linux/netfilter_arp.h), which x/sys/unix
// does not define: the hook ARP packets the node sends pass.
const hookARPOut nftables.ChainHook = 1

// Offsets in an Ethernet/IPv4 ARP packet (RFC 826), from the ARP header.
const (
	offPtype = 2  // ptype (2), hlen (1), plen (1)
	offOp    = 6  // operation (2)
	offSPA   = 14 // sender protocol address, after the 6-byte sender MAC
)

// ethIPv4 is ptype 0x0800, hlen 6, plen 4: the only ARP layout whose sender
// IP sits at offSPA.
var ethIPv4 = []byte{0x08, 0x00, 6, 4}

var (
	opRequest = []byte{0, 1}
	opReply   = []byte{0, 2}
)

func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyARP}
}

func chain(t *nftables.Table) *nftables.Chain {
	return &nftables.Chain{
		Name:     ChainName,
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookRef(hookARPOut),
		Priority: nftables.ChainPriorityFilter,
		Policy:   ref(nftables.ChainPolicyAccept),
	}
}

func vipSet(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: SetName, KeyType: nftables.TypeIPAddr}
}

// rules returns the chain's rules, in order.
func rules(c *nftables.Chain, s *nftables.Set) []*nftables.Rule {
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	probe := []expr.Any{
		&expr.Immediate{Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Payload{
			OperationType:  expr.PayloadWrite,
			SourceRegister: 1,
			Base:           expr.PayloadBaseNetworkHeader,
			Offset:         offSPA,
			Len:            4,
		},
	}
	return []*nftables.Rule{
		rule(c, commentReply, append(senderIn(s, opReply), drop)),
		rule(c, commentRequest, append(senderIn(s, opRequest), probe...)),
	}
}

func rule(c *nftables.Chain, comment string, exprs []expr.Any) *nftables.Rule {
	return &nftables.Rule{
		Table:    c.Table,
		Chain:    c,
		Exprs:    exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, comment),
	}
}

// senderIn matches an Ethernet/IPv4 ARP packet with operation op whose
// sender IP is in s.
func senderIn(s *nftables.Set, op []byte) []expr.Any {
	return []expr.Any{
		load(offPtype, len(ethIPv4)),
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ethIPv4},
		load(offOp, len(op)),
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: op},
		load(offSPA, 4),
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
	}
}

func load(off, n int) *expr.Payload {
	return &expr.Payload{
		DestRegister: 1,
		Base:         expr.PayloadBaseNetworkHeader,
		Offset:       uint32(off),
		Len:          uint32(n),
	}
}

func ref[T any](v T) *T { return &v }

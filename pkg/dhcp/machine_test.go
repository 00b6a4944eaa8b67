package dhcp

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

var (
	t0       = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clientHW = net.HardwareAddr{2, 0, 0, 0, 0xaa, 1}
	otherHW  = net.HardwareAddr{2, 0, 0, 0, 0xaa, 2}
	serverHW = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	server1  = netip.MustParseAddr("198.18.0.1")
	server2  = netip.MustParseAddr("198.18.0.2")
	router   = netip.MustParseAddr("198.18.0.254")
	addrA    = netip.MustParseAddr("198.18.0.222")
	addrB    = netip.MustParseAddr("198.18.0.223")
)

var cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func newTestMachine(requested netip.Addr) *machine {
	var n uint32
	return &machine{
		hw:        clientHW,
		hostname:  "svc-web",
		requested: requested,
		maxSize:   1500,
		log:       slog.New(slog.DiscardHandler),
		newXID: func() dhcpv4.TransactionID {
			n++
			return xid(n)
		},
	}
}

func xid(n uint32) dhcpv4.TransactionID {
	var x dhcpv4.TransactionID
	binary.BigEndian.PutUint32(x[:], n)
	return x
}

// srv describes a server reply.
type srv struct {
	Type   dhcpv4.MessageType
	XID    uint32
	Addr   netip.Addr // yiaddr
	Server netip.Addr // option 54; the zero Addr leaves it out
	Lease  uint32     // option 51 in seconds; 0 leaves it out
	T1, T2 uint32     // options 58, 59 in seconds; 0 leaves them out
	Router netip.Addr
	Rapid  bool // option 80
	HW     net.HardwareAddr
	Op     dhcpv4.OpcodeType
}

func (s srv) msg() *dhcpv4.DHCPv4 {
	m := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        1,
		ClientHWAddr:  clientHW,
		TransactionID: xid(s.XID),
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       dhcpv4.Options{},
	}
	if s.Op != 0 {
		m.OpCode = s.Op
	}
	if s.HW != nil {
		m.ClientHWAddr = s.HW
	}
	m.UpdateOption(dhcpv4.OptMessageType(s.Type))
	if s.Addr.IsValid() {
		m.YourIPAddr = s.Addr.AsSlice()
		m.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(24, 32)))
	}
	if s.Server.IsValid() {
		m.UpdateOption(dhcpv4.OptServerIdentifier(s.Server.AsSlice()))
	}
	for code, v := range map[dhcpv4.OptionCode]uint32{
		dhcpv4.OptionIPAddressLeaseTime: s.Lease,
		dhcpv4.OptionRenewTimeValue:     s.T1,
		dhcpv4.OptionRebindingTimeValue: s.T2,
	} {
		if v != 0 {
			m.UpdateOption(dhcpv4.OptGeneric(code, binary.BigEndian.AppendUint32(nil, v)))
		}
	}
	if s.Router.IsValid() {
		m.UpdateOption(dhcpv4.OptRouter(s.Router.AsSlice()))
	}
	if s.Rapid {
		m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil))
	}
	return m
}

func offerOf(x uint32, a netip.Addr) srv {
	return srv{Type: dhcpv4.MessageTypeOffer, XID: x, Addr: a, Server: server1, Lease: 120}
}

// ackOf is an ACK of a 120 s lease of a from server1 (T1 60 s, T2 105 s).
func ackOf(x uint32, a netip.Addr) srv {
	return srv{Type: dhcpv4.MessageTypeAck, XID: x, Addr: a, Server: server1, Lease: 120, Router: router}
}

func nakOf(x uint32) srv {
	return srv{Type: dhcpv4.MessageTypeNak, XID: x, Server: server1}
}

// sent is what the tests check of an outgoing message.
type sent struct {
	Type      string
	XID       uint32
	Src, Dst  netip.Addr
	DstMAC    string // "" for broadcast
	Ciaddr    netip.Addr
	Requested netip.Addr // option 50
	Server    netip.Addr // option 54
	Secs      uint16
	Rapid     bool
}

func summarize(out []outgoing) []sent {
	var s []sent
	for _, o := range out {
		m := o.msg
		x := sent{
			Type:      strings.TrimPrefix(m.MessageType().String(), "DHCP"),
			XID:       binary.BigEndian.Uint32(m.TransactionID[:]),
			Src:       o.src,
			Dst:       o.dst,
			Ciaddr:    addr4(m.ClientIPAddr),
			Requested: addr4(m.RequestedIPAddress()),
			Server:    addr4(m.ServerIdentifier()),
			Secs:      m.NumSeconds,
			Rapid:     m.Options.Has(dhcpv4.OptionRapidCommit),
		}
		if o.dstMAC != nil {
			x.DstMAC = o.dstMAC.String()
		}
		s = append(s, x)
	}
	return s
}

var (
	zero  = netip.IPv4Unspecified()
	bcast = netip.MustParseAddr("255.255.255.255")
)

func discover(x uint32, secs uint16, requested netip.Addr) sent {
	return sent{Type: "DISCOVER", XID: x, Src: zero, Dst: bcast, Ciaddr: zero, Requested: requested, Secs: secs, Rapid: true}
}

func requestSelecting(x uint32, secs uint16, a netip.Addr) sent {
	return sent{Type: "REQUEST", XID: x, Src: zero, Dst: bcast, Ciaddr: zero, Requested: a, Server: server1, Secs: secs}
}

func renew(x uint32, secs uint16, a netip.Addr) sent {
	return sent{Type: "REQUEST", XID: x, Src: a, Dst: server1, DstMAC: serverHW.String(), Ciaddr: a, Secs: secs}
}

func rebind(x uint32, secs uint16, a netip.Addr) sent {
	return sent{Type: "REQUEST", XID: x, Src: a, Dst: bcast, Ciaddr: a, Secs: secs}
}

// step is one input to a machine and what must follow.
type step struct {
	At   time.Duration // since t0
	Recv *srv          // nil: the timer fired

	Sent    []sent
	Changed bool
	State   state
	Next    time.Duration // m.next since t0
	Lease   netip.Addr    // the lease held, if any
}

func sec(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func recv(s srv) *srv { return &s }

// bound120 is the state after acquiring addrA with a rapid-commit ACK of a
// 120 s lease at t0 (T1 60 s, T2 105 s, expiry 120 s; xid 1).
func bound120(t *testing.T) *machine {
	m := newTestMachine(netip.Addr{})
	m.resume(t0)
	a := ackOf(1, addrA)
	a.Rapid = true
	if _, changed := m.receive(t0, a.msg(), serverHW); !changed || m.state != stateBound {
		t.Fatalf("setup: not bound: %v", m.state)
	}
	return m
}

func TestMachine(t *testing.T) {
	rapid := ackOf(1, addrA)
	rapid.Rapid = true
	tests := []struct {
		name      string
		bound     bool       // start from bound120 instead of resume at t0
		requested netip.Addr // Config.RequestedIP
		start     step       // what resume at t0 does (unless bound)
		steps     []step
	}{{
		name:      "acquire: DISCOVER, OFFER, REQUEST, ACK",
		requested: addrA,
		start:     step{Sent: []sent{discover(1, 0, addrA)}, State: stateSelecting, Next: sec(1)},
		steps: []step{
			{At: sec(1), Sent: []sent{discover(1, 1, addrA)}, State: stateSelecting, Next: sec(3)},
			{At: sec(1.5), Recv: recv(offerOf(1, addrB)), Sent: []sent{requestSelecting(1, 1, addrB)}, State: stateRequesting, Next: sec(2.5)},
			// Times count from the REQUEST (1.5 s): T1 61.5 s.
			{At: sec(1.6), Recv: recv(ackOf(1, addrB)), Changed: true, State: stateBound, Next: sec(61.5), Lease: addrB},
		},
	}, {
		name:  "rapid commit",
		start: step{Sent: []sent{discover(1, 0, netip.Addr{})}, State: stateSelecting, Next: sec(1)},
		steps: []step{
			{At: sec(0.1), Recv: &rapid, Changed: true, State: stateBound, Next: sec(60), Lease: addrA},
		},
	}, {
		name:  "an ACK to a DISCOVER without rapid commit is ignored",
		start: step{Sent: []sent{discover(1, 0, netip.Addr{})}, State: stateSelecting, Next: sec(1)},
		steps: []step{
			{At: sec(0.1), Recv: recv(ackOf(1, addrA)), State: stateSelecting, Next: sec(1)},
		},
	}, {
		name:  "DISCOVER backoff 1, 2, 4, 8, 10, 10 s",
		start: step{Sent: []sent{discover(1, 0, netip.Addr{})}, State: stateSelecting, Next: sec(1)},
		steps: []step{
			{At: sec(1), Sent: []sent{discover(1, 1, netip.Addr{})}, State: stateSelecting, Next: sec(3)},
			{At: sec(3), Sent: []sent{discover(1, 3, netip.Addr{})}, State: stateSelecting, Next: sec(7)},
			{At: sec(7), Sent: []sent{discover(1, 7, netip.Addr{})}, State: stateSelecting, Next: sec(15)},
			{At: sec(15), Sent: []sent{discover(1, 15, netip.Addr{})}, State: stateSelecting, Next: sec(25)},
			{At: sec(25), Sent: []sent{discover(1, 25, netip.Addr{})}, State: stateSelecting, Next: sec(35)},
			{At: sec(35), Sent: []sent{discover(1, 35, netip.Addr{})}, State: stateSelecting, Next: sec(45)},
		},
	}, {
		name:  "an early timer does nothing",
		start: step{Sent: []sent{discover(1, 0, netip.Addr{})}, State: stateSelecting, Next: sec(1)},
		steps: []step{
			{At: sec(0.5), State: stateSelecting, Next: sec(1)},
		},
	}, {
		name:  "unusable OFFERs and stray replies are ignored",
		start: step{Sent: []sent{discover(1, 0, netip.Addr{})}, State: stateSelecting, Next: sec(1)},
		steps: []step{
			{At: sec(0.1), Recv: &srv{Type: dhcpv4.MessageTypeOffer, XID: 1, Addr: addrA}, State: stateSelecting, Next: sec(1)},     // no server id
			{At: sec(0.1), Recv: &srv{Type: dhcpv4.MessageTypeOffer, XID: 1, Server: server1}, State: stateSelecting, Next: sec(1)}, // no yiaddr
			{At: sec(0.1), Recv: &srv{Type: dhcpv4.MessageTypeOffer, XID: 1, Addr: bcast, Server: server1}, State: stateSelecting, Next: sec(1)},
			{At: sec(0.1), Recv: recv(offerOf(2, addrA)), State: stateSelecting, Next: sec(1)}, // other xid
			{At: sec(0.1), Recv: &srv{Type: dhcpv4.MessageTypeOffer, XID: 1, Addr: addrA, Server: server1, HW: otherHW}, State: stateSelecting, Next: sec(1)},
			{At: sec(0.1), Recv: &srv{Type: dhcpv4.MessageTypeOffer, XID: 1, Addr: addrA, Server: server1, Op: dhcpv4.OpcodeBootRequest}, State: stateSelecting, Next: sec(1)},
			{At: sec(0.1), Recv: recv(nakOf(1)), State: stateSelecting, Next: sec(1)},
		},
	}, {
		name:  "the first OFFER wins; other servers' answers are ignored",
		start: step{Sent: []sent{discover(1, 0, netip.Addr{})}, State: stateSelecting, Next: sec(1)},
		steps: []step{
			{At: sec(0.1), Recv: recv(offerOf(1, addrA)), Sent: []sent{requestSelecting(1, 0, addrA)}, State: stateRequesting, Next: sec(1.1)},
			{At: sec(0.2), Recv: &srv{Type: dhcpv4.MessageTypeOffer, XID: 1, Addr: addrB, Server: server2}, State: stateRequesting, Next: sec(1.1)},
			{At: sec(0.2), Recv: &srv{Type: dhcpv4.MessageTypeNak, XID: 1, Server: server2}, State: stateRequesting, Next: sec(1.1)},
			{At: sec(0.2), Recv: &srv{Type: dhcpv4.MessageTypeAck, XID: 1, Addr: addrB, Server: server2, Lease: 120}, State: stateRequesting, Next: sec(1.1)},
			// An ACK without server identifier is taken as the chosen server's.
			{At: sec(0.3), Recv: &srv{Type: dhcpv4.MessageTypeAck, XID: 1, Addr: addrA, Lease: 100}, Changed: true, State: stateBound, Next: sec(50.1), Lease: addrA},
		},
	}, {
		name:  "no answer to 4 REQUESTs: DISCOVER again",
		start: step{Sent: []sent{discover(1, 0, netip.Addr{})}, State: stateSelecting, Next: sec(1)},
		steps: []step{
			{At: sec(0.5), Recv: recv(offerOf(1, addrA)), Sent: []sent{requestSelecting(1, 0, addrA)}, State: stateRequesting, Next: sec(1.5)},
			{At: sec(1.5), Sent: []sent{requestSelecting(1, 1, addrA)}, State: stateRequesting, Next: sec(3.5)},
			{At: sec(3.5), Sent: []sent{requestSelecting(1, 3, addrA)}, State: stateRequesting, Next: sec(7.5)},
			{At: sec(7.5), Sent: []sent{requestSelecting(1, 7, addrA)}, State: stateRequesting, Next: sec(15.5)},
			{At: sec(15.5), Sent: []sent{discover(2, 0, netip.Addr{})}, State: stateSelecting, Next: sec(16.5)},
		},
	}, {
		name:      "NAKs while requesting: DISCOVER at once, then with backoff; the refused address is not asked for again",
		requested: addrA,
		start:     step{Sent: []sent{discover(1, 0, addrA)}, State: stateSelecting, Next: sec(1)},
		steps: []step{
			{At: sec(0.1), Recv: recv(offerOf(1, addrA)), Sent: []sent{requestSelecting(1, 0, addrA)}, State: stateRequesting, Next: sec(1.1)},
			{At: sec(0.2), Recv: recv(nakOf(1)), Sent: []sent{discover(2, 0, netip.Addr{})}, State: stateSelecting, Next: sec(1.2)},
			{At: sec(0.3), Recv: recv(offerOf(2, addrB)), Sent: []sent{requestSelecting(2, 0, addrB)}, State: stateRequesting, Next: sec(1.3)},
			{At: sec(0.4), Recv: recv(nakOf(2)), State: stateInit, Next: sec(1.4)},
			{At: sec(1.4), Sent: []sent{discover(3, 0, netip.Addr{})}, State: stateSelecting, Next: sec(2.4)},
			{At: sec(1.5), Recv: recv(offerOf(3, addrB)), Sent: []sent{requestSelecting(3, 0, addrB)}, State: stateRequesting, Next: sec(2.5)},
			{At: sec(1.6), Recv: recv(nakOf(3)), State: stateInit, Next: sec(3.6)},
		},
	}, {
		name:  "renewal at T1, unicast, same address: not a change",
		bound: true,
		steps: []step{
			{At: sec(60), Sent: []sent{renew(2, 0, addrA)}, State: stateRenewing, Next: sec(82.5), Lease: addrA},
			{At: sec(60.1), Recv: recv(ackOf(2, addrA)), State: stateBound, Next: sec(120), Lease: addrA},
			{At: sec(120), Sent: []sent{renew(3, 0, addrA)}, State: stateRenewing, Next: sec(142.5), Lease: addrA},
		},
	}, {
		name:  "renewal to another address is a change",
		bound: true,
		steps: []step{
			{At: sec(60), Sent: []sent{renew(2, 0, addrA)}, State: stateRenewing, Next: sec(82.5), Lease: addrA},
			{At: sec(61), Recv: recv(ackOf(2, addrB)), Changed: true, State: stateBound, Next: sec(120), Lease: addrB},
		},
	}, {
		name:  "renewal fails until T2 (retries at half the time left, at least 1 s), rebinding fails until expiry",
		bound: true,
		steps: []step{
			{At: sec(60), Sent: []sent{renew(2, 0, addrA)}, State: stateRenewing, Next: sec(82.5), Lease: addrA},
			{At: sec(82.5), Sent: []sent{renew(2, 22, addrA)}, State: stateRenewing, Next: sec(93.75), Lease: addrA},
			{At: sec(93.75), Sent: []sent{renew(2, 33, addrA)}, State: stateRenewing, Next: sec(99.375), Lease: addrA},
			{At: sec(99.375), Sent: []sent{renew(2, 39, addrA)}, State: stateRenewing, Next: sec(102.1875), Lease: addrA},
			{At: sec(102.1875), Sent: []sent{renew(2, 42, addrA)}, State: stateRenewing, Next: sec(103.59375), Lease: addrA},
			{At: sec(103.59375), Sent: []sent{renew(2, 43, addrA)}, State: stateRenewing, Next: sec(104.59375), Lease: addrA},
			{At: sec(104.59375), Sent: []sent{renew(2, 44, addrA)}, State: stateRenewing, Next: sec(105), Lease: addrA},
			{At: sec(105), Sent: []sent{rebind(3, 0, addrA)}, State: stateRebinding, Next: sec(112.5), Lease: addrA},
			{At: sec(112.5), Sent: []sent{rebind(3, 7, addrA)}, State: stateRebinding, Next: sec(116.25), Lease: addrA},
			{At: sec(116.25), Sent: []sent{rebind(3, 11, addrA)}, State: stateRebinding, Next: sec(118.125), Lease: addrA},
			{At: sec(118.125), Sent: []sent{rebind(3, 13, addrA)}, State: stateRebinding, Next: sec(119.125), Lease: addrA},
			{At: sec(119.125), Sent: []sent{rebind(3, 14, addrA)}, State: stateRebinding, Next: sec(120), Lease: addrA},
			// Expired: dropped (a change), DISCOVER for the address just lost.
			{At: sec(120), Sent: []sent{discover(4, 0, addrA)}, Changed: true, State: stateSelecting, Next: sec(121)},
		},
	}, {
		name:  "rebinding ACK from another server",
		bound: true,
		steps: []step{
			{At: sec(105), Sent: []sent{rebind(2, 0, addrA)}, State: stateRebinding, Next: sec(112.5), Lease: addrA},
			{At: sec(106), Recv: &srv{Type: dhcpv4.MessageTypeAck, XID: 2, Addr: addrA, Server: server2, Lease: 120, Router: router}, Changed: true, State: stateBound, Next: sec(165), Lease: addrA},
		},
	}, {
		name:  "NAK while renewing: lease dropped, DISCOVER at once without the refused address",
		bound: true,
		steps: []step{
			{At: sec(60), Sent: []sent{renew(2, 0, addrA)}, State: stateRenewing, Next: sec(82.5), Lease: addrA},
			{At: sec(60.1), Recv: recv(nakOf(2)), Sent: []sent{discover(3, 0, netip.Addr{})}, Changed: true, State: stateSelecting, Next: sec(61.1)},
		},
	}, {
		name:  "NAK while rebinding",
		bound: true,
		steps: []step{
			{At: sec(105), Sent: []sent{rebind(2, 0, addrA)}, State: stateRebinding, Next: sec(112.5), Lease: addrA},
			{At: sec(105.1), Recv: &srv{Type: dhcpv4.MessageTypeNak, XID: 2, Server: server2}, Sent: []sent{discover(3, 0, netip.Addr{})}, Changed: true, State: stateSelecting, Next: sec(106.1)},
		},
	}, {
		name:  "stray replies while bound are ignored",
		bound: true,
		steps: []step{
			{At: sec(1), Recv: recv(offerOf(1, addrB)), State: stateBound, Next: sec(60), Lease: addrA},
			{At: sec(1), Recv: recv(ackOf(1, addrB)), State: stateBound, Next: sec(60), Lease: addrA},
			{At: sec(1), Recv: recv(nakOf(1)), State: stateBound, Next: sec(60), Lease: addrA},
		},
	}, {
		name:  "timer late past T2 (suspended host): straight to rebinding",
		bound: true,
		steps: []step{
			{At: sec(110), Sent: []sent{rebind(2, 0, addrA)}, State: stateRebinding, Next: sec(115), Lease: addrA},
		},
	}, {
		name:  "timer late past expiry: dropped",
		bound: true,
		steps: []step{
			{At: sec(300), Sent: []sent{discover(2, 0, addrA)}, Changed: true, State: stateSelecting, Next: sec(301)},
		},
	}, {
		name:  "unusable ACKs are ignored",
		bound: true,
		steps: []step{
			{At: sec(60), Sent: []sent{renew(2, 0, addrA)}, State: stateRenewing, Next: sec(82.5), Lease: addrA},
			{At: sec(61), Recv: &srv{Type: dhcpv4.MessageTypeAck, XID: 2, Addr: addrA, Server: server1}, State: stateRenewing, Next: sec(82.5), Lease: addrA}, // no lease time
			{At: sec(61), Recv: &srv{Type: dhcpv4.MessageTypeAck, XID: 2, Server: server1, Lease: 120}, State: stateRenewing, Next: sec(82.5), Lease: addrA},  // no yiaddr
			{At: sec(61), Recv: &srv{Type: dhcpv4.MessageTypeAck, XID: 2, Addr: bcast, Server: server1, Lease: 120}, State: stateRenewing, Next: sec(82.5), Lease: addrA},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m *machine
			if tc.bound {
				m = bound120(t)
			} else {
				m = newTestMachine(tc.requested)
				out, changed := m.resume(t0)
				check(t, "resume", m, tc.start, out, changed)
			}
			for i, st := range tc.steps {
				now := t0.Add(st.At)
				var out []outgoing
				var changed bool
				if st.Recv == nil {
					out, changed = m.timeout(now)
				} else {
					out, changed = m.receive(now, st.Recv.msg(), serverHW)
				}
				check(t, fmt.Sprintf("step %d", i), m, st, out, changed)
			}
		})
	}
}

func check(t *testing.T, what string, m *machine, want step, out []outgoing, changed bool) {
	t.Helper()
	got := step{At: want.At, Recv: want.Recv, Sent: summarize(out), Changed: changed, State: m.state, Next: m.next.Sub(t0)}
	if m.hasLease {
		got.Lease = m.lease.Addr
	}
	if diff := cmp.Diff(want, got, cmpNetip); diff != "" {
		t.Fatalf("%s at %v: (-want +got)\n%s", what, want.At, diff)
	}
}

func TestMachineResume(t *testing.T) {
	tests := []struct {
		name string
		at   time.Duration
		want step
	}{
		{"before T1: keep, wait for T1", sec(10), step{State: stateBound, Next: sec(60), Lease: addrA}},
		{"after T1: keep, renew at once", sec(70), step{Sent: []sent{renew(2, 0, addrA)}, State: stateRenewing, Next: sec(87.5), Lease: addrA}},
		{"after T2: keep, rebind at once", sec(110), step{Sent: []sent{rebind(2, 0, addrA)}, State: stateRebinding, Next: sec(115), Lease: addrA}},
		{"expired: drop, DISCOVER for it", sec(120), step{Sent: []sent{discover(2, 0, addrA)}, Changed: true, State: stateSelecting, Next: sec(121)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := bound120(t)
			tc.want.At = tc.at
			out, changed := m.resume(t0.Add(tc.at))
			check(t, "resume", m, tc.want, out, changed)
		})
	}
}

func TestMachineRelease(t *testing.T) {
	m := bound120(t)
	o, ok := m.release()
	if !ok {
		t.Fatal("release: no message")
	}
	want := []sent{{Type: "RELEASE", XID: 2, Src: addrA, Dst: server1, DstMAC: serverHW.String(), Ciaddr: addrA, Server: server1}}
	if diff := cmp.Diff(want, summarize([]outgoing{o}), cmpNetip); diff != "" {
		t.Errorf("release (-want +got)\n%s", diff)
	}
	if m.hasLease {
		t.Error("lease kept after release")
	}
	if _, ok := m.release(); ok {
		t.Error("second release sent a message")
	}
	// A later resume acquires again.
	out, changed := m.resume(t0.Add(sec(1)))
	check(t, "resume", m, step{At: sec(1), Sent: []sent{discover(3, 0, addrA)}, State: stateSelecting, Next: sec(2)}, out, changed)
}

func TestMessageOptions(t *testing.T) {
	m := bound120(t)
	o := m.renewMsg(t0.Add(sec(60)))
	if got := o.msg.HostName(); got != "svc-web" {
		t.Errorf("hostname option = %q, want svc-web", got)
	}
	if got, _ := dhcpv4.GetUint16(dhcpv4.OptionMaximumDHCPMessageSize, o.msg.Options); got != 1500 {
		t.Errorf("max message size = %d, want 1500", got)
	}
	if o.msg.Options.Has(dhcpv4.OptionRequestedIPAddress) || o.msg.Options.Has(dhcpv4.OptionServerIdentifier) {
		t.Error("renewing REQUEST carries option 50 or 54 (RFC 2131 table 5: MUST NOT)")
	}
	if diff := cmp.Diff(dhcpv4.OptionCodeList(requestedOptions()), o.msg.ParameterRequestList()); diff != "" {
		t.Errorf("parameter request list (-want +got)\n%s", diff)
	}
	m.hostname = ""
	if o := m.renewMsg(t0.Add(sec(60))); o.msg.Options.Has(dhcpv4.OptionHostName) {
		t.Error("hostname option sent for an empty Hostname")
	}
}

// kube-vip.io/dhcp-broadcast: every message carries the BOOTP broadcast
// flag; without it none does.
func TestBroadcastFlag(t *testing.T) {
	for _, broadcast := range []bool{false, true} {
		m := bound120(t)
		m.broadcast = broadcast
		msgs := map[string]*dhcpv4.DHCPv4{
			"discover": m.discoverMsg(t0).msg,
			"renew":    m.renewMsg(t0.Add(sec(60))).msg,
			"rebind":   m.rebindMsg(t0.Add(sec(100))).msg,
		}
		for name, msg := range msgs {
			if got := msg.IsBroadcast(); got != broadcast {
				t.Errorf("broadcast=%v: %s has the flag %v", broadcast, name, got)
			}
		}
	}
}

func TestLeaseFromACK(t *testing.T) {
	sent, now := t0, t0.Add(sec(0.5))
	tests := []struct {
		name    string
		ack     srv
		mask    bool
		want    Lease
		wantErr string
	}{{
		name: "defaults: T1 1/2, T2 7/8",
		ack:  ackOf(1, addrA),
		want: Lease{Addr: addrA, Prefix: netip.MustParsePrefix("198.18.0.222/24"), Server: server1, Router: router,
			Acquired: now, T1: t0.Add(sec(60)), T2: t0.Add(sec(105)), Expiry: t0.Add(sec(120))},
	}, {
		name: "server's T1, T2",
		ack:  srv{Type: dhcpv4.MessageTypeAck, Addr: addrA, Server: server1, Lease: 3600, T1: 600, T2: 3000},
		want: Lease{Addr: addrA, Prefix: netip.MustParsePrefix("198.18.0.222/24"), Server: server1,
			Acquired: now, T1: t0.Add(sec(600)), T2: t0.Add(sec(3000)), Expiry: t0.Add(sec(3600))},
	}, {
		name: "T1 after T2: default T1",
		ack:  srv{Type: dhcpv4.MessageTypeAck, Addr: addrA, Server: server1, Lease: 100, T1: 95, T2: 90},
		want: Lease{Addr: addrA, Prefix: netip.MustParsePrefix("198.18.0.222/24"), Server: server1,
			Acquired: now, T1: t0.Add(sec(50)), T2: t0.Add(sec(90)), Expiry: t0.Add(sec(100))},
	}, {
		name: "T2 not before expiry: default T2",
		ack:  srv{Type: dhcpv4.MessageTypeAck, Addr: addrA, Server: server1, Lease: 100, T1: 30, T2: 100},
		want: Lease{Addr: addrA, Prefix: netip.MustParsePrefix("198.18.0.222/24"), Server: server1,
			Acquired: now, T1: t0.Add(sec(30)), T2: t0.Add(sec(87.5)), Expiry: t0.Add(sec(100))},
	}, {
		name: "server's T2 before the default T1: T1 = T2",
		ack:  srv{Type: dhcpv4.MessageTypeAck, Addr: addrA, Server: server1, Lease: 100, T2: 40},
		want: Lease{Addr: addrA, Prefix: netip.MustParsePrefix("198.18.0.222/24"), Server: server1,
			Acquired: now, T1: t0.Add(sec(40)), T2: t0.Add(sec(40)), Expiry: t0.Add(sec(100))},
	}, {
		name: "infinite lease does not overflow",
		ack:  srv{Type: dhcpv4.MessageTypeAck, Addr: addrA, Server: server1, Lease: 0xffffffff},
		want: Lease{Addr: addrA, Prefix: netip.MustParsePrefix("198.18.0.222/24"), Server: server1,
			Acquired: now, T1: t0.Add(0xffffffff * time.Second / 2), T2: t0.Add(0xffffffff*time.Second - 0xffffffff*time.Second/8),
			Expiry: t0.Add(0xffffffff * time.Second)},
	}, {
		name:    "no lease time",
		ack:     srv{Type: dhcpv4.MessageTypeAck, Addr: addrA, Server: server1},
		wantErr: "no lease time",
	}, {
		name:    "no address",
		ack:     srv{Type: dhcpv4.MessageTypeAck, Server: server1, Lease: 60},
		wantErr: "unusable address",
	}, {
		name:    "no server identifier and no fallback",
		ack:     srv{Type: dhcpv4.MessageTypeAck, Addr: addrA, Lease: 60},
		wantErr: "no server identifier",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := leaseFromACK(tc.ack.msg(), sent, now, netip.Addr{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpNetip); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestLeaseFromACKOptionalFields(t *testing.T) {
	m := srv{Type: dhcpv4.MessageTypeAck, Addr: addrA, Lease: 60}.msg()
	m.Options.Del(dhcpv4.OptionSubnetMask)
	m.UpdateOption(dhcpv4.OptRouter(net.IPv4zero, server2.AsSlice()))
	got, err := leaseFromACK(m, t0, t0, server1)
	if err != nil {
		t.Fatal(err)
	}
	if got.Prefix.IsValid() || got.Router != server2 || got.Server != server1 {
		t.Errorf("Prefix, Router, Server = %v, %v, %v; want none (no mask), the first usable router %v, the fallback server %v",
			got.Prefix, got.Router, got.Server, server2, server1)
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 7; n++ {
		got = append(got, backoff(n))
	}
	want := []time.Duration{sec(1), sec(2), sec(4), sec(8), sec(10), sec(10), sec(10)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

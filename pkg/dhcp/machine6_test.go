package dhcp

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	hw6    = net.HardwareAddr{0x02, 0x42, 0xc6, 0x12, 0x00, 0x07}
	addr6A = netip.MustParseAddr("fd00:1ab::2a0")
	addr6B = netip.MustParseAddr("fd00:1ab::2b0")
	duid1  = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	duid2  = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
)

func newTestMachine6(requested netip.Addr) *machine6 {
	m := newMachine6(hw6, Config{Hostname: "svc-web", RequestedIP: requested}, slog.New(slog.DiscardHandler))
	var n byte
	m.newXID = func() dhcpv6.TransactionID { n++; return dhcpv6.TransactionID{0, 0, n} }
	return m
}

// sent6 is what a test checks of a client message.
type sent6 struct {
	Type     string
	XID      byte
	ClientLL string // DUID-LL MAC
	Server   string // server DUID-LL MAC, "" if absent
	IAID     [4]byte
	Hint     netip.Addr
	Rapid    bool
	FQDN     string
	Dst      netip.Addr
}

func summarize6(t *testing.T, d datagram) sent6 {
	t.Helper()
	msg, err := dhcpv6.MessageFromBytes(d.payload)
	if err != nil {
		t.Fatalf("client sent a malformed message: %v", err)
	}
	s := sent6{Type: msg.MessageType.String(), XID: msg.TransactionID[2], Dst: d.dst,
		Rapid: msg.GetOneOption(dhcpv6.OptionRapidCommit) != nil}
	if c, ok := msg.Options.ClientID().(*dhcpv6.DUIDLL); ok {
		s.ClientLL = c.LinkLayerAddr.String()
	}
	if sv, ok := msg.Options.ServerID().(*dhcpv6.DUIDLL); ok {
		s.Server = sv.LinkLayerAddr.String()
	}
	if ia := msg.Options.OneIANA(); ia != nil {
		s.IAID = ia.IaId
		if a := ia.Options.OneAddress(); a != nil {
			s.Hint, _ = netip.AddrFromSlice(a.IPv6Addr)
		}
	}
	if f := msg.Options.FQDN(); f != nil && f.DomainName != nil {
		s.FQDN = strings.Join(f.DomainName.Labels, ".")
	}
	return s
}

func only6(t *testing.T, out []datagram) sent6 {
	t.Helper()
	if len(out) != 1 {
		t.Fatalf("sent %d messages, want 1", len(out))
	}
	return summarize6(t, out[0])
}

// reply6 builds a server message answering the machine's current exchange.
type reply6 struct {
	mt          dhcpv6.MessageType
	server      dhcpv6.DUID
	addr        netip.Addr
	t1, t2      time.Duration
	pref, valid time.Duration
	status      iana.StatusCode // in the IA_NA
	rapid       bool
	xid         *dhcpv6.TransactionID // default: the machine's
	client      dhcpv6.DUID           // default: the machine's
}

func (r reply6) bytes(m *machine6) []byte {
	msg := &dhcpv6.Message{MessageType: r.mt, TransactionID: m.xid}
	if r.xid != nil {
		msg.TransactionID = *r.xid
	}
	client := r.client
	if client == nil {
		client = m.duid
	}
	msg.AddOption(dhcpv6.OptClientID(client))
	msg.AddOption(dhcpv6.OptServerID(r.server))
	if r.rapid {
		msg.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
	}
	ia := &dhcpv6.OptIANA{IaId: m.iaid, T1: r.t1, T2: r.t2}
	if r.addr.IsValid() {
		ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: r.addr.AsSlice(), PreferredLifetime: r.pref, ValidLifetime: r.valid})
	}
	if r.status != 0 {
		ia.Options.Add(&dhcpv6.OptStatusCode{StatusCode: r.status, StatusMessage: "no"})
	}
	msg.AddOption(ia)
	return msg.ToBytes()
}

func grant(mt dhcpv6.MessageType, server dhcpv6.DUID, addr netip.Addr) reply6 {
	return reply6{mt: mt, server: server, addr: addr, t1: 60 * time.Second, t2: 96 * time.Second, pref: 120 * time.Second, valid: 120 * time.Second}
}

func TestMachine6Acquires(t *testing.T) {
	client, srv1 := hw6.String(), duid1.LinkLayerAddr.String()
	iaid := [4]byte(hw6[2:6])
	all := netip.MustParseAddr("ff02::1:2")

	m := newTestMachine6(addr6B)
	out, changed := m.resume(t0)
	want := sent6{Type: "SOLICIT", XID: 1, ClientLL: client, IAID: iaid, Hint: addr6B, Rapid: true, FQDN: "svc-web", Dst: all}
	if diff := cmp.Diff(want, only6(t, out), cmpNetip); diff != "" || changed {
		t.Fatalf("first Solicit (-want +got), changed=%t:\n%s", changed, diff)
	}
	if !m.due().Equal(t0.Add(time.Second)) {
		t.Errorf("retransmission due %v, want 1 s", m.due().Sub(t0))
	}

	// Noise is ignored: another exchange, another client, no address.
	other := dhcpv6.TransactionID{9, 9, 9}
	for _, r := range []reply6{
		{mt: dhcpv6.MessageTypeAdvertise, server: duid1, addr: addr6A, valid: time.Minute, xid: &other},
		{mt: dhcpv6.MessageTypeAdvertise, server: duid1, addr: addr6A, valid: time.Minute, client: duid2},
		{mt: dhcpv6.MessageTypeAdvertise, server: duid1, status: iana.StatusNoAddrsAvail},
		{mt: dhcpv6.MessageTypeReply, server: duid1, addr: addr6A, valid: time.Minute}, // no rapid commit
	} {
		if out, changed := m.receive(t0, r.bytes(m), nil); len(out) != 0 || changed {
			t.Fatalf("%+v: sent %d, changed %t; want it ignored", r, len(out), changed)
		}
	}

	at := t0.Add(300 * time.Millisecond)
	out, _ = m.receive(at, grant(dhcpv6.MessageTypeAdvertise, duid1, addr6A).bytes(m), nil)
	want = sent6{Type: "REQUEST", XID: 2, ClientLL: client, Server: srv1, IAID: iaid, Hint: addr6A, FQDN: "svc-web", Dst: all}
	if diff := cmp.Diff(want, only6(t, out), cmpNetip); diff != "" {
		t.Fatalf("Request (-want +got):\n%s", diff)
	}
	if out, _ := m.receive(at, grant(dhcpv6.MessageTypeReply, duid2, addr6B).bytes(m), nil); len(out) != 0 || m.hasLease {
		t.Fatal("took a Reply from a server it did not ask")
	}
	out, changed = m.receive(at.Add(10*time.Millisecond), grant(dhcpv6.MessageTypeReply, duid1, addr6A).bytes(m), nil)
	if len(out) != 0 || !changed {
		t.Fatalf("Reply: sent %d, changed %t; want bound", len(out), changed)
	}
	wantLease := Lease{Addr: addr6A, Acquired: at.Add(10 * time.Millisecond), T1: at.Add(60 * time.Second), T2: at.Add(96 * time.Second), Expiry: at.Add(120 * time.Second)}
	if diff := cmp.Diff(wantLease, m.lease, cmpNetip); diff != "" {
		t.Errorf("lease (-want +got):\n%s", diff)
	}
	if !m.due().Equal(wantLease.T1) {
		t.Errorf("next step %v, want T1", m.due())
	}
}

func TestMachine6RapidCommit(t *testing.T) {
	m := newTestMachine6(netip.Addr{})
	m.resume(t0)
	r := grant(dhcpv6.MessageTypeReply, duid1, addr6A)
	r.rapid, r.t1, r.t2 = true, 0, 0 // the client picks T1 and T2
	if _, changed := m.receive(t0, r.bytes(m), nil); !changed || m.lease.Addr != addr6A {
		t.Fatalf("rapid-commit Reply not taken: %+v", m.lease)
	}
	if got, want := m.lease.T1.Sub(t0), 60*time.Second; got != want {
		t.Errorf("T1 = %v, want %v (half the preferred lifetime)", got, want)
	}
	if got, want := m.lease.T2.Sub(t0), 96*time.Second; got != want {
		t.Errorf("T2 = %v, want %v (0.8 of the preferred lifetime)", got, want)
	}
}

// bound6 returns a machine holding addr6A from duid1 since t0.
func bound6(t *testing.T) *machine6 {
	t.Helper()
	m := newTestMachine6(netip.Addr{})
	m.resume(t0)
	r := grant(dhcpv6.MessageTypeReply, duid1, addr6A)
	r.rapid = true
	if _, changed := m.receive(t0, r.bytes(m), nil); !changed {
		t.Fatal("not bound")
	}
	return m
}

func TestMachine6ExtendsAndLoses(t *testing.T) {
	srv1 := duid1.LinkLayerAddr.String()
	m := bound6(t)
	if out, _ := m.timeout(t0.Add(59 * time.Second)); len(out) != 0 {
		t.Fatal("sent before T1")
	}
	renew := only6(t, mustTimeout(t, m, t0.Add(60*time.Second)))
	if renew.Type != "RENEW" || renew.Server != srv1 || renew.Hint != addr6A {
		t.Fatalf("at T1 sent %+v, want a Renew to duid1 for %s", renew, addr6A)
	}
	again := only6(t, mustTimeout(t, m, m.due()))
	if again.Type != "RENEW" || again.XID != renew.XID {
		t.Errorf("Renew retransmission %+v: want the same exchange", again)
	}
	rebind := only6(t, mustTimeout(t, m, t0.Add(96*time.Second)))
	if rebind.Type != "REBIND" || rebind.Server != "" || rebind.Hint != addr6A || rebind.XID == renew.XID {
		t.Fatalf("at T2 sent %+v, want a Rebind to any server, a new exchange", rebind)
	}
	// Another server extends it while rebinding.
	at := t0.Add(100 * time.Second)
	if _, changed := m.receive(at, grant(dhcpv6.MessageTypeReply, duid2, addr6A).bytes(m), nil); changed || m.state != stateBound {
		t.Fatalf("Rebind Reply: changed %t state %v; want bound, same address", changed, m.state)
	}
	if !m.lease.Expiry.Equal(t0.Add(96*time.Second + 120*time.Second)) {
		t.Errorf("expiry %v not counted from the Rebind", m.lease.Expiry.Sub(t0))
	}
	// Nobody answers until expiry: the address is lost and asked for again.
	for m.state != stateSelecting {
		mustTimeout(t, m, m.due())
	}
	if m.hasLease || m.requested != addr6A {
		t.Errorf("after expiry: lease %t, hint %s; want none, hint %s", m.hasLease, m.requested, addr6A)
	}
}

func mustTimeout(t *testing.T, m *machine6, at time.Time) []datagram {
	t.Helper()
	out, _ := m.timeout(at)
	if len(out) == 0 {
		t.Fatalf("nothing sent at %v (state %v, due %v)", at.Sub(t0), m.state, m.due().Sub(t0))
	}
	return out
}

func TestMachine6ReplyWithoutAddress(t *testing.T) {
	m := bound6(t)
	mustTimeout(t, m, t0.Add(60*time.Second))
	refused := reply6{mt: dhcpv6.MessageTypeReply, server: duid1, status: iana.StatusNoBinding}
	out, changed := m.receive(t0.Add(61*time.Second), refused.bytes(m), nil)
	if !changed || m.hasLease {
		t.Fatal("NoBinding did not drop the lease")
	}
	if s := only6(t, out); s.Type != "SOLICIT" || s.Hint.IsValid() {
		t.Errorf("after NoBinding sent %+v, want a Solicit without the refused address", s)
	}
	// A second refusal in a row backs off.
	r := reply6{mt: dhcpv6.MessageTypeReply, server: duid1, rapid: true, status: iana.StatusNoAddrsAvail}
	if out, _ := m.receive(t0.Add(62*time.Second), r.bytes(m), nil); len(out) != 0 || m.state != stateInit {
		t.Fatalf("second refusal: sent %d, state %v; want a wait", len(out), m.state)
	}
	if !m.due().Equal(t0.Add(63 * time.Second)) {
		t.Errorf("retry due %v after the refusal, want 1 s", m.due().Sub(t0.Add(62*time.Second)))
	}
}

func TestMachine6RequestGivesUp(t *testing.T) {
	m := newTestMachine6(netip.Addr{})
	m.resume(t0)
	m.receive(t0, grant(dhcpv6.MessageTypeAdvertise, duid1, addr6A).bytes(m), nil)
	var types []string
	for range maxRequests {
		types = append(types, only6(t, mustTimeout(t, m, m.due())).Type)
	}
	if diff := cmp.Diff([]string{"REQUEST", "REQUEST", "REQUEST", "SOLICIT"}, types); diff != "" {
		t.Errorf("after an unanswered Request (-want +got):\n%s", diff)
	}
}

func TestMachine6Release(t *testing.T) {
	m := bound6(t)
	d, ok := m.release()
	if !ok {
		t.Fatal("no Release for a held lease")
	}
	s := summarize6(t, d)
	want := sent6{Type: "RELEASE", XID: s.XID, ClientLL: hw6.String(), Server: duid1.LinkLayerAddr.String(),
		IAID: [4]byte(hw6[2:6]), Hint: addr6A, Dst: netip.MustParseAddr("ff02::1:2")}
	if diff := cmp.Diff(want, s, cmpNetip); diff != "" {
		t.Errorf("Release (-want +got):\n%s", diff)
	}
	if m.hasLease {
		t.Error("lease kept after release")
	}
	if _, ok := m.release(); ok {
		t.Error("a second Release without a lease")
	}
}

// FuzzMachine6Receive: whatever arrives, in any state, the machine neither
// panics nor takes a lease it was not granted in its own exchange.
func FuzzMachine6Receive(f *testing.F) {
	seed := newTestMachine6(netip.Addr{})
	seed.resume(t0)
	f.Add(grant(dhcpv6.MessageTypeAdvertise, duid1, addr6A).bytes(seed), uint8(0))
	r := grant(dhcpv6.MessageTypeReply, duid1, addr6A)
	r.rapid = true
	f.Add(r.bytes(seed), uint8(1))
	f.Add([]byte{7, 0, 0, 1, 0, 1, 0}, uint8(2))
	f.Fuzz(func(t *testing.T, payload []byte, phase uint8) {
		m := newTestMachine6(netip.Addr{})
		m.resume(t0)
		switch phase % 3 {
		case 1:
			m.receive(t0, grant(dhcpv6.MessageTypeAdvertise, duid1, addr6A).bytes(m), nil)
		case 2:
			m.receive(t0, r.bytes(m), nil)
			m.timeout(t0.Add(60 * time.Second))
		}
		m.receive(t0.Add(61*time.Second), payload, nil)
		if m.hasLease && !usable6(m.lease.Addr) {
			t.Fatalf("took unusable address %s", m.lease.Addr)
		}
	})
}

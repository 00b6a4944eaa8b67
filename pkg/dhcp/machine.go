package dhcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Retransmission schedule.
const (
	// While acquiring, the wait after the n-th transmission of a message
	// is backoffMin·2^(n-1), at most backoffMax.
	backoffMin = time.Second
	backoffMax = 10 * time.Second
	// While renewing (rebinding), a REQUEST is repeated after half the time
	// left until T2 (expiry), but not sooner than retryMin (RFC 2131 4.4.5
	// says 60 s; leases here may be as short as dnsmasq's 2 minutes).
	retryMin = time.Second
	// REQUESTs sent for one OFFER before starting over with a DISCOVER.
	maxRequests = 4
)

// limitedBroadcast is 255.255.255.255.
func limitedBroadcast() netip.Addr { return netip.AddrFrom4([4]byte{255, 255, 255, 255}) }

// state is where a machine is in RFC 2131's client state diagram.
type state int

const (
	stateInit       state = iota // waiting to DISCOVER (after a NAK)
	stateSelecting               // DISCOVER sent, waiting for an OFFER (or a rapid-commit ACK)
	stateRequesting              // REQUEST for an OFFER sent, waiting for ACK/NAK
	stateBound                   // lease held, waiting for T1
	stateRenewing                // REQUEST unicast to the server, until T2
	stateRebinding               // REQUEST broadcast, until the lease expires
)

func (s state) String() string {
	switch s {
	case stateInit:
		return "init"
	case stateSelecting:
		return "selecting"
	case stateRequesting:
		return "requesting"
	case stateBound:
		return "bound"
	case stateRenewing:
		return "renewing"
	case stateRebinding:
		return "rebinding"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// outgoing is one message to transmit.
type outgoing struct {
	msg    *dhcpv4.DHCPv4
	src    netip.Addr       // IPv4 source: 0.0.0.0 before the client has an address
	dst    netip.Addr       // IPv4 destination: 255.255.255.255 or the server
	dstMAC net.HardwareAddr // Ethernet destination; nil means broadcast
}

// machine is the client's protocol logic, without I/O or a clock: every
// input carries the time it happened, and every step returns what to send
// and whether the lease changed. After each step, timeout is due at next.
type machine struct {
	hw        net.HardwareAddr
	hostname  string
	requested netip.Addr // option 50 in DISCOVERs: the last address held, else Config.RequestedIP; none after a NAK
	maxSize   uint16     // option 57
	broadcast bool       // BOOTP broadcast flag in every message
	newXID    func() dhcpv4.TransactionID
	log       *slog.Logger

	state   state
	next    time.Time
	xid     dhcpv4.TransactionID
	started time.Time // first transmission of this exchange (the secs field)
	sentAt  time.Time // last transmission of this exchange
	tries   int       // transmissions in this exchange
	offer   *dhcpv4.DHCPv4
	naks    int // NAKs since the last ACK

	lease     Lease
	hasLease  bool
	serverMAC net.HardwareAddr // Ethernet source of the last ACK: the next hop to the server
}

// backoff is the wait after the n-th transmission of an acquiring message.
func backoff(n int) time.Duration {
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// retryAt is when to repeat a renewing (rebinding) REQUEST sent at now,
// with the phase ending at deadline.
func retryAt(now, deadline time.Time) time.Time {
	at := now.Add(max(deadline.Sub(now)/2, retryMin))
	if at.After(deadline) {
		return deadline
	}
	return at
}

// resume (re)starts the machine at now, as Run starts: a lease that is
// still valid is kept (and renewed at once if T1 has passed), otherwise it
// is dropped and the client acquires one.
func (m *machine) resume(now time.Time) ([]outgoing, bool) {
	if m.hasLease && now.Before(m.lease.Expiry) {
		m.state = stateBound
		m.next = m.lease.T1
		return m.timeout(now)
	}
	changed := m.drop()
	return m.discover(now), changed
}

// timeout advances the machine when next has come.
func (m *machine) timeout(now time.Time) ([]outgoing, bool) {
	if now.Before(m.next) {
		return nil, false
	}
	switch m.state {
	case stateInit:
		return m.discover(now), false
	case stateSelecting:
		return m.transmit(now, m.discoverMsg(now), now.Add(backoff(m.tries+1))), false
	case stateRequesting:
		if m.tries >= maxRequests {
			m.log.Info("no answer to REQUEST, starting over", "server", addr4(m.offer.ServerIdentifier()))
			return m.discover(now), false
		}
		return m.transmit(now, m.requestSelecting(now), now.Add(backoff(m.tries+1))), false
	}

	l := m.lease
	switch {
	case !now.Before(l.Expiry):
		m.log.Warn("DHCP lease expired", "addr", l.Addr, "server", l.Server)
		m.drop()
		return m.discover(now), true
	case !now.Before(l.T2):
		if m.state != stateRebinding {
			m.log.Info("rebinding DHCP lease", "addr", l.Addr, "expiry", l.Expiry)
			m.state = stateRebinding
			m.exchange(now)
		}
		return m.transmit(now, m.rebindMsg(now), retryAt(now, l.Expiry)), false
	case !now.Before(l.T1):
		if m.state != stateRenewing {
			m.log.Debug("renewing DHCP lease", "addr", l.Addr, "server", l.Server)
			m.state = stateRenewing
			m.exchange(now)
		}
		return m.transmit(now, m.renewMsg(now), retryAt(now, l.T2)), false
	}
	m.next = l.T1
	return nil, false
}

// receive handles a reply that arrived at now from Ethernet address from.
func (m *machine) receive(now time.Time, msg *dhcpv4.DHCPv4, from net.HardwareAddr) ([]outgoing, bool) {
	if msg.OpCode != dhcpv4.OpcodeBootReply || msg.TransactionID != m.xid || !bytes.Equal(msg.ClientHWAddr, m.hw) {
		return nil, false
	}
	mt := msg.MessageType()
	switch m.state {
	case stateSelecting:
		switch mt {
		case dhcpv4.MessageTypeOffer:
			yiaddr, server := addr4(msg.YourIPAddr), addr4(msg.ServerIdentifier())
			if !usable(yiaddr) || !server.IsValid() {
				m.log.Debug("ignoring unusable OFFER", "yiaddr", yiaddr, "server", server)
				return nil, false
			}
			m.log.Debug("DHCP offer", "addr", yiaddr, "server", server)
			m.offer = msg
			m.state = stateRequesting
			m.tries = 0 // same xid (RFC 2131 4.4.1)
			return m.transmit(now, m.requestSelecting(now), now.Add(backoff(1))), false
		case dhcpv4.MessageTypeAck:
			if msg.Options.Has(dhcpv4.OptionRapidCommit) {
				return m.bind(now, msg, from)
			}
		}
	case stateRequesting:
		want := addr4(m.offer.ServerIdentifier())
		if got := addr4(msg.ServerIdentifier()); got.IsValid() && got != want {
			return nil, false // another server's answer
		}
		switch mt {
		case dhcpv4.MessageTypeAck:
			return m.bind(now, msg, from)
		case dhcpv4.MessageTypeNak:
			return m.nak(now, msg)
		}
	case stateRenewing, stateRebinding:
		switch mt {
		case dhcpv4.MessageTypeAck:
			return m.bind(now, msg, from)
		case dhcpv4.MessageTypeNak:
			return m.nak(now, msg)
		}
	}
	return nil, false
}

// bind takes the lease an ACK grants.
func (m *machine) bind(now time.Time, ack *dhcpv4.DHCPv4, from net.HardwareAddr) ([]outgoing, bool) {
	fallback := m.lease.Server
	if m.offer != nil {
		fallback = addr4(m.offer.ServerIdentifier())
	}
	l, err := leaseFromACK(ack, m.sentAt, now, fallback)
	if err != nil {
		m.log.Warn("ignoring DHCP ACK", "err", err)
		return nil, false
	}
	changed := !m.hasLease || !sameBinding(m.lease, l)
	if changed {
		m.log.Info("DHCP lease acquired", "addr", l.Addr, "prefix", l.Prefix, "server", l.Server,
			"router", l.Router, "expiry", l.Expiry)
	} else {
		m.log.Debug("DHCP lease renewed", "addr", l.Addr, "server", l.Server, "expiry", l.Expiry)
	}
	m.lease, m.hasLease = l, true
	m.serverMAC = slices.Clone(from)
	m.requested = l.Addr
	m.naks = 0
	m.offer = nil
	m.state = stateBound
	m.next = l.T1
	return nil, changed
}

// nak drops the lease or offer a server refused and acquires again: at
// once after the first NAK, with backoff after further ones in a row.
func (m *machine) nak(now time.Time, msg *dhcpv4.DHCPv4) ([]outgoing, bool) {
	m.naks++
	m.log.Warn("DHCP NAK", "state", m.state, "server", addr4(msg.ServerIdentifier()),
		"message", msg.Message(), "lease", m.lease.Addr)
	changed := m.drop()
	m.offer = nil
	m.requested = netip.Addr{} // the server refused it: do not insist
	if m.naks == 1 {
		return m.discover(now), changed
	}
	m.state = stateInit
	m.next = now.Add(backoff(m.naks - 1))
	return nil, changed
}

// release returns the DHCPRELEASE for the lease held, if any, and forgets
// the lease.
func (m *machine) release() (outgoing, bool) {
	if !m.hasLease {
		return outgoing{}, false
	}
	l := m.lease
	msg := m.newMsg(dhcpv4.MessageTypeRelease, time.Time{})
	msg.TransactionID = m.newXID()
	msg.ClientIPAddr = l.Addr.AsSlice()
	msg.UpdateOption(dhcpv4.OptServerIdentifier(l.Server.AsSlice()))
	o := outgoing{msg: msg, src: l.Addr, dst: l.Server, dstMAC: m.serverMAC}
	m.drop()
	m.state = stateInit
	m.next = time.Time{}
	return o, true
}

// drop forgets the lease; it reports whether there was one.
func (m *machine) drop() bool {
	had := m.hasLease
	m.lease, m.hasLease, m.serverMAC = Lease{}, false, nil
	return had
}

// exchange starts a new message exchange.
func (m *machine) exchange(now time.Time) {
	m.xid = m.newXID()
	m.started = now
	m.tries = 0
}

func (m *machine) discover(now time.Time) []outgoing {
	m.state = stateSelecting
	m.offer = nil
	m.exchange(now)
	return m.transmit(now, m.discoverMsg(now), now.Add(backoff(1)))
}

// transmit records that o is sent at now and the next timeout.
func (m *machine) transmit(now time.Time, o outgoing, next time.Time) []outgoing {
	m.tries++
	m.sentAt = now
	m.next = next
	return []outgoing{o}
}

// requestedOptions is the parameter request list (option 55).
func requestedOptions() []dhcpv4.OptionCode {
	return []dhcpv4.OptionCode{
		dhcpv4.OptionSubnetMask,
		dhcpv4.OptionRouter,
		dhcpv4.OptionIPAddressLeaseTime,
		dhcpv4.OptionRenewTimeValue,
		dhcpv4.OptionRebindingTimeValue,
		dhcpv4.OptionServerIdentifier,
	}
}

// newMsg returns a request of type mt with the client's fields, the xid of
// the current exchange and, unless now is zero, secs since it started.
func (m *machine) newMsg(mt dhcpv4.MessageType, now time.Time) *dhcpv4.DHCPv4 {
	msg := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        1, // Ethernet
		ClientHWAddr:  slices.Clone(m.hw),
		TransactionID: m.xid,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       dhcpv4.Options{},
	}
	if !now.IsZero() {
		msg.NumSeconds = uint16(min(max(now.Sub(m.started)/time.Second, 0), 0xffff))
	}
	msg.UpdateOption(dhcpv4.OptMessageType(mt))
	if m.broadcast {
		msg.SetBroadcast()
	}
	if mt == dhcpv4.MessageTypeRelease {
		return msg
	}
	msg.UpdateOption(dhcpv4.OptParameterRequestList(requestedOptions()...))
	msg.UpdateOption(dhcpv4.OptMaxMessageSize(m.maxSize))
	if m.hostname != "" {
		msg.UpdateOption(dhcpv4.OptHostName(m.hostname))
	}
	return msg
}

func (m *machine) discoverMsg(now time.Time) outgoing {
	msg := m.newMsg(dhcpv4.MessageTypeDiscover, now)
	if m.requested.IsValid() {
		msg.UpdateOption(dhcpv4.OptRequestedIPAddress(m.requested.AsSlice()))
	}
	msg.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil))
	return outgoing{msg: msg, src: netip.IPv4Unspecified(), dst: limitedBroadcast()}
}

// requestSelecting answers the OFFER taken (RFC 2131 4.3.2, SELECTING).
func (m *machine) requestSelecting(now time.Time) outgoing {
	msg := m.newMsg(dhcpv4.MessageTypeRequest, now)
	msg.UpdateOption(dhcpv4.OptRequestedIPAddress(m.offer.YourIPAddr))
	msg.UpdateOption(dhcpv4.OptServerIdentifier(m.offer.ServerIdentifier()))
	return outgoing{msg: msg, src: netip.IPv4Unspecified(), dst: limitedBroadcast()}
}

// renewMsg is unicast to the server that granted the lease (RENEWING).
func (m *machine) renewMsg(now time.Time) outgoing {
	msg := m.newMsg(dhcpv4.MessageTypeRequest, now)
	msg.ClientIPAddr = m.lease.Addr.AsSlice()
	return outgoing{msg: msg, src: m.lease.Addr, dst: m.lease.Server, dstMAC: m.serverMAC}
}

// rebindMsg is broadcast to any server (REBINDING).
func (m *machine) rebindMsg(now time.Time) outgoing {
	msg := m.newMsg(dhcpv4.MessageTypeRequest, now)
	msg.ClientIPAddr = m.lease.Addr.AsSlice()
	return outgoing{msg: msg, src: m.lease.Addr, dst: limitedBroadcast()}
}

// leaseFromACK makes the lease an ACK grants. The times count from sent,
// when the REQUEST was sent (RFC 2131 4.4.1), so the client's idea of the
// lease never outlasts the server's; Acquired is now. server is used when
// the ACK has no server identifier.
func leaseFromACK(ack *dhcpv4.DHCPv4, sent, now time.Time, server netip.Addr) (Lease, error) {
	addr := addr4(ack.YourIPAddr)
	if !usable(addr) {
		return Lease{}, fmt.Errorf("unusable address %v", ack.YourIPAddr)
	}
	if s := addr4(ack.ServerIdentifier()); s.IsValid() {
		server = s
	}
	if !server.IsValid() || server.IsUnspecified() {
		return Lease{}, errors.New("no server identifier")
	}
	lt, ok := seconds(ack, dhcpv4.OptionIPAddressLeaseTime)
	if !ok || lt == 0 {
		return Lease{}, errors.New("no lease time")
	}
	t1opt, _ := seconds(ack, dhcpv4.OptionRenewTimeValue)
	t2opt, _ := seconds(ack, dhcpv4.OptionRebindingTimeValue)
	t1, t2 := renewalTimes(lt, t1opt, t2opt)
	l := Lease{
		Addr:     addr,
		Server:   server,
		Acquired: now,
		T1:       sent.Add(t1),
		T2:       sent.Add(t2),
		Expiry:   sent.Add(lt),
	}
	if mask := ack.SubnetMask(); mask != nil {
		if ones, bits := mask.Size(); bits == 32 {
			l.Prefix = netip.PrefixFrom(addr, ones)
		}
	}
	for _, r := range ack.Router() {
		if a := addr4(r); usable(a) {
			l.Router = a
			break
		}
	}
	return l, nil
}

// renewalTimes returns T1 and T2 for a lease of length lease: the server's
// (t1, t2; 0 when absent) if they make sense (0 < T1 <= T2 < lease), else
// RFC 2131's defaults of 0.5 and 0.875 of the lease.
func renewalTimes(lease, t1, t2 time.Duration) (time.Duration, time.Duration) {
	if t2 <= 0 || t2 >= lease {
		t2 = lease - lease/8
	}
	if t1 <= 0 || t1 > t2 {
		t1 = min(lease/2, t2)
	}
	return t1, t2
}

// seconds reads a 32-bit seconds option.
func seconds(msg *dhcpv4.DHCPv4, code dhcpv4.OptionCode) (time.Duration, bool) {
	v := msg.Options.Get(code)
	if len(v) != 4 {
		return 0, false
	}
	return time.Duration(binary.BigEndian.Uint32(v)) * time.Second, true
}

// sameBinding tells whether two leases bind the same address the same way;
// only their times differ.
func sameBinding(a, b Lease) bool {
	return a.Addr == b.Addr && a.Prefix == b.Prefix && a.Server == b.Server && a.Router == b.Router
}

// addr4 converts an IPv4 net.IP; anything else gives the zero Addr.
func addr4(ip net.IP) netip.Addr {
	ip4 := ip.To4()
	if ip4 == nil {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(ip4))
}

// usable tells whether a can be a host's address.
func usable(a netip.Addr) bool {
	return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() && a != limitedBroadcast()
}

// v4 is machine as the Client's protocol.
type v4 struct{ m *machine }

func (p v4) resume(now time.Time) ([]datagram, bool) { return datagrams(p.m.resume(now)) }

func (p v4) timeout(now time.Time) ([]datagram, bool) { return datagrams(p.m.timeout(now)) }

func (p v4) receive(now time.Time, payload []byte, from net.HardwareAddr) ([]datagram, bool) {
	msg, err := dhcpv4.FromBytes(payload)
	if err != nil {
		p.m.log.Debug("ignoring malformed DHCP packet", "from", from, "err", err)
		return nil, false
	}
	return datagrams(p.m.receive(now, msg, from))
}

func (p v4) release() (datagram, bool) {
	o, ok := p.m.release()
	if !ok {
		return datagram{}, false
	}
	return o.datagram(), true
}

func (p v4) held() (Lease, bool) { return p.m.lease, p.m.hasLease }

func (p v4) due() time.Time { return p.m.next }

func datagrams(out []outgoing, changed bool) ([]datagram, bool) {
	ds := make([]datagram, len(out))
	for i, o := range out {
		ds[i] = o.datagram()
	}
	return ds, changed
}

func (o outgoing) datagram() datagram {
	return datagram{payload: o.msg.ToBytes(), kind: o.msg.MessageType().String(), src: o.src, dst: o.dst, dstMAC: o.dstMAC}
}

package dhcp

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

// allDHCP is All_DHCP_Relay_Agents_and_Servers (RFC 8415 7.1): every
// DHCPv6 message of the client goes there.
func allDHCP() netip.Addr { return netip.MustParseAddr("ff02::1:2") }

// machine6 is the DHCPv6 client's protocol logic (RFC 8415, one IA_NA with
// one address), in the shape of machine: Solicit (with Rapid Commit),
// Advertise, Request, Reply; Renew to the granting server from T1, Rebind
// to any from T2; at expiry, or when a server says the address is gone,
// the lease is dropped and acquired again.
type machine6 struct {
	duid      dhcpv6.DUID // DUID-LL of the interface's MAC: the same on every node
	iaid      [4]byte
	hostname  string
	requested netip.Addr // hint in Solicits: the last address held, else Config.RequestedIP
	newXID    func() dhcpv6.TransactionID
	log       *slog.Logger

	state   state // stateSelecting: Solicit sent; stateRequesting: Request sent
	next    time.Time
	xid     dhcpv6.TransactionID
	started time.Time
	sentAt  time.Time
	tries   int
	offer   *dhcpv6.Message // the Advertise taken
	refused int             // replies without an address in a row

	lease    Lease
	hasLease bool
	server   dhcpv6.DUID // of the last Reply
}

func newMachine6(hw net.HardwareAddr, cfg Config, log *slog.Logger) *machine6 {
	return &machine6{
		duid:      &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: hw},
		iaid:      [4]byte(hw[2:6]),
		hostname:  cfg.Hostname,
		requested: cfg.RequestedIP,
		newXID: func() dhcpv6.TransactionID {
			var x dhcpv6.TransactionID
			_, _ = rand.Read(x[:]) // crypto/rand.Read never fails
			return x
		},
		log: log,
	}
}

func (m *machine6) held() (Lease, bool) { return m.lease, m.hasLease }

func (m *machine6) due() time.Time { return m.next }

// resume (re)starts the machine at now: a valid lease is kept (renewed at
// once if T1 has passed), otherwise it is acquired.
func (m *machine6) resume(now time.Time) ([]datagram, bool) {
	if m.hasLease && now.Before(m.lease.Expiry) {
		m.state = stateBound
		m.next = m.lease.T1
		return m.timeout(now)
	}
	changed := m.drop()
	return m.solicit(now), changed
}

// timeout advances the machine when next has come.
func (m *machine6) timeout(now time.Time) ([]datagram, bool) {
	if now.Before(m.next) {
		return nil, false
	}
	switch m.state {
	case stateInit:
		return m.solicit(now), false
	case stateSelecting:
		return m.transmit(now, dhcpv6.MessageTypeSolicit, now.Add(backoff(m.tries+1))), false
	case stateRequesting:
		if m.tries >= maxRequests {
			m.log.Info("no answer to DHCPv6 Request, starting over")
			return m.solicit(now), false
		}
		return m.transmit(now, dhcpv6.MessageTypeRequest, now.Add(backoff(m.tries+1))), false
	}
	l := m.lease
	switch {
	case !now.Before(l.Expiry):
		m.log.Warn("DHCPv6 lease expired", "addr", l.Addr)
		m.drop()
		return m.solicit(now), true
	case !now.Before(l.T2):
		m.phase(now, stateRebinding)
		return m.transmit(now, dhcpv6.MessageTypeRebind, retryAt(now, l.Expiry)), false
	case !now.Before(l.T1):
		m.phase(now, stateRenewing)
		return m.transmit(now, dhcpv6.MessageTypeRenew, retryAt(now, l.T2)), false
	}
	m.next = l.T1
	return nil, false
}

// phase enters a renewing or rebinding phase with a new exchange.
func (m *machine6) phase(now time.Time, s state) {
	if m.state != s {
		m.log.Debug("extending DHCPv6 lease", "state", s, "addr", m.lease.Addr, "expiry", m.lease.Expiry)
		m.state = s
		m.exchange(now)
	}
}

// receive handles a server's message.
func (m *machine6) receive(now time.Time, payload []byte, _ net.HardwareAddr) ([]datagram, bool) {
	msg, err := dhcpv6.MessageFromBytes(payload)
	if err != nil || msg.TransactionID != m.xid || !sameDUID(msg.Options.ClientID(), m.duid) || msg.Options.ServerID() == nil {
		return nil, false
	}
	switch {
	case m.state == stateSelecting && msg.MessageType == dhcpv6.MessageTypeAdvertise:
		return m.advertised(now, msg)
	case m.state == stateSelecting && msg.MessageType == dhcpv6.MessageTypeReply && msg.GetOneOption(dhcpv6.OptionRapidCommit) != nil,
		m.state == stateRequesting && msg.MessageType == dhcpv6.MessageTypeReply && sameDUID(msg.Options.ServerID(), m.offer.Options.ServerID()),
		m.state == stateRenewing && msg.MessageType == dhcpv6.MessageTypeReply && sameDUID(msg.Options.ServerID(), m.server),
		m.state == stateRebinding && msg.MessageType == dhcpv6.MessageTypeReply:
		return m.reply(now, msg)
	}
	return nil, false
}

// advertised takes the first Advertise that offers an address (a client
// may wait for better ones; there is no use for that here).
func (m *machine6) advertised(now time.Time, adv *dhcpv6.Message) ([]datagram, bool) {
	if _, _, err := m.granted(adv); err != nil {
		m.log.Debug("ignoring DHCPv6 Advertise", "err", err)
		return nil, false
	}
	m.offer = adv
	m.state = stateRequesting
	m.exchange(now)
	return m.transmit(now, dhcpv6.MessageTypeRequest, now.Add(backoff(1))), false
}

// reply takes the lease a Reply grants, or drops the lease (or the offer)
// when the Reply grants nothing, and acquires again: at once after the
// first such Reply, with backoff after further ones in a row.
func (m *machine6) reply(now time.Time, msg *dhcpv6.Message) ([]datagram, bool) {
	ia, addr, err := m.granted(msg)
	if err == nil {
		return nil, m.bind(now, msg, ia, addr)
	}
	m.refused++
	m.log.Warn("DHCPv6 Reply without the address", "state", m.state, "lease", m.lease.Addr, "err", err)
	changed := m.drop()
	m.offer = nil
	m.requested = netip.Addr{}
	if m.refused == 1 {
		return m.solicit(now), changed
	}
	m.state = stateInit
	m.next = now.Add(backoff(m.refused - 1))
	return nil, changed
}

// granted returns the client's IA_NA in msg and its usable address, or why
// there is none.
func (m *machine6) granted(msg *dhcpv6.Message) (*dhcpv6.OptIANA, *dhcpv6.OptIAAddress, error) {
	if st := msg.Options.Status(); st != nil && st.StatusCode != iana.StatusSuccess {
		return nil, nil, fmt.Errorf("status %s: %s", st.StatusCode, st.StatusMessage)
	}
	for _, ia := range msg.Options.IANA() {
		if ia.IaId != m.iaid {
			continue
		}
		if st := ia.Options.Status(); st != nil && st.StatusCode != iana.StatusSuccess {
			return nil, nil, fmt.Errorf("IA_NA status %s: %s", st.StatusCode, st.StatusMessage)
		}
		for _, a := range ia.Options.Addresses() {
			if addr, ok := netip.AddrFromSlice(a.IPv6Addr); ok && usable6(addr) && a.ValidLifetime > 0 {
				return ia, a, nil
			}
		}
	}
	return nil, nil, errors.New("no IA_NA address")
}

// bind takes the lease; it reports whether the binding changed.
func (m *machine6) bind(now time.Time, msg *dhcpv6.Message, ia *dhcpv6.OptIANA, a *dhcpv6.OptIAAddress) bool {
	addr, _ := netip.AddrFromSlice(a.IPv6Addr)
	valid := a.ValidLifetime
	t1, t2 := ia.T1, ia.T2
	if t1 <= 0 || t2 <= 0 || t1 > t2 || t2 >= valid {
		// RFC 8415 21.4 leaves them to the client: 0.5 and 0.8 of the
		// preferred lifetime, bounded by the valid one.
		pref := min(max(a.PreferredLifetime, valid/2), valid)
		t1, t2 = pref/2, pref*4/5
	}
	l := Lease{Addr: addr, Acquired: now, T1: m.sentAt.Add(t1), T2: m.sentAt.Add(t2), Expiry: m.sentAt.Add(valid)}
	changed := !m.hasLease || m.lease.Addr != l.Addr
	if changed {
		m.log.Info("DHCPv6 lease acquired", "addr", l.Addr, "expiry", l.Expiry)
	} else {
		m.log.Debug("DHCPv6 lease renewed", "addr", l.Addr, "expiry", l.Expiry)
	}
	m.lease, m.hasLease = l, true
	m.server = msg.Options.ServerID()
	m.requested = addr
	m.refused = 0
	m.offer = nil
	m.state = stateBound
	m.next = l.T1
	return changed
}

// release returns the Release for the lease held, if any, and forgets it.
func (m *machine6) release() (datagram, bool) {
	if !m.hasLease {
		return datagram{}, false
	}
	m.exchange(time.Time{})
	d := m.message(dhcpv6.MessageTypeRelease, time.Time{})
	m.drop()
	m.state = stateInit
	m.next = time.Time{}
	return d, true
}

func (m *machine6) drop() bool {
	had := m.hasLease
	m.lease, m.hasLease, m.server = Lease{}, false, nil
	return had
}

func (m *machine6) exchange(now time.Time) {
	m.xid = m.newXID()
	m.started = now
	m.tries = 0
}

func (m *machine6) solicit(now time.Time) []datagram {
	m.state = stateSelecting
	m.offer = nil
	m.exchange(now)
	return m.transmit(now, dhcpv6.MessageTypeSolicit, now.Add(backoff(1)))
}

func (m *machine6) transmit(now time.Time, mt dhcpv6.MessageType, next time.Time) []datagram {
	m.tries++
	m.sentAt = now
	m.next = next
	return []datagram{m.message(mt, now)}
}

// message builds a client message of type mt for the current exchange.
func (m *machine6) message(mt dhcpv6.MessageType, now time.Time) datagram {
	msg := &dhcpv6.Message{MessageType: mt, TransactionID: m.xid}
	msg.AddOption(dhcpv6.OptClientID(m.duid))
	elapsed := time.Duration(0)
	if !now.IsZero() && !m.started.IsZero() {
		elapsed = now.Sub(m.started)
	}
	msg.AddOption(dhcpv6.OptElapsedTime(elapsed))
	ia := &dhcpv6.OptIANA{IaId: m.iaid}
	switch mt {
	case dhcpv6.MessageTypeSolicit:
		msg.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
		m.hint(ia, m.requested)
	case dhcpv6.MessageTypeRequest:
		msg.AddOption(dhcpv6.OptServerID(m.offer.Options.ServerID()))
		if _, a, err := m.granted(m.offer); err == nil {
			ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a.IPv6Addr})
		}
	case dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease:
		msg.AddOption(dhcpv6.OptServerID(m.server))
		m.hint(ia, m.lease.Addr)
	case dhcpv6.MessageTypeRebind:
		m.hint(ia, m.lease.Addr)
	}
	msg.AddOption(ia)
	if m.hostname != "" && mt != dhcpv6.MessageTypeRelease {
		msg.AddOption(&dhcpv6.OptFQDN{Flags: 0, DomainName: &rfc1035label.Labels{Labels: []string{m.hostname}}})
	}
	return datagram{payload: msg.ToBytes(), kind: mt.String(), dst: allDHCP()}
}

// hint puts addr (if valid) in ia.
func (m *machine6) hint(ia *dhcpv6.OptIANA, addr netip.Addr) {
	if addr.IsValid() {
		ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: addr.AsSlice()})
	}
}

func sameDUID(a, b dhcpv6.DUID) bool {
	return a != nil && b != nil && bytes.Equal(a.ToBytes(), b.ToBytes())
}

// usable6 tells whether a can be a host's global (or ULA) IPv6 address.
func usable6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() && !a.IsLinkLocalUnicast()
}

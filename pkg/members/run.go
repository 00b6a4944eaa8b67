package members

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Run sends a report every Interval and reads the others' until ctx ends;
// it closes the connection then. It returns nil after ctx ends.
func (m *Members) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.receive(ctx)
	}()
	defer wg.Wait()
	defer m.conn.Close() // ends receive
	t := m.clock.NewTimer()
	defer t.Stop()
	for {
		m.broadcast()
		t.Reset(m.clock.Now().Add(m.cfg.Interval))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
	}
}

// broadcast sends this agent's report to every other agent it knows or
// has heard. A failed send is logged at debug level: a lost report is what
// the freshness rule is for.
func (m *Members) broadcast() {
	b, addrs, err := m.outgoing()
	if err != nil {
		m.log.Warn("members report not sent", "err", err)
		return
	}
	for _, a := range addrs {
		if _, err := m.conn.WriteToUDPAddrPort(b, a); err != nil {
			m.log.Debug("members report not sent", "to", a, "err", err)
		}
	}
}

// outgoing seals the next report and lists where it goes.
func (m *Members) outgoing() ([]byte, []netip.AddrPort, error) {
	m.mu.Lock()
	m.seq++
	r := report{Node: m.cfg.Node, Instance: m.cfg.Instance, Seq: m.seq,
		Sent: int64(m.clock.Now().Sub(m.start)), Reachable: m.reachable, Since: m.since.UTC(), Held: m.held}
	var addrs []netip.AddrPort
	for _, mb := range m.members {
		if mb.instance != "" {
			r.Echo = append(r.Echo, echo{Node: mb.node, Instance: mb.instance, Sent: mb.sent})
		}
		if mb.addr.IsValid() {
			addrs = append(addrs, netip.AddrPortFrom(mb.addr, m.cfg.Port))
		}
	}
	m.mu.Unlock()
	sort.Slice(r.Echo, func(i, j int) bool { return r.Echo[i].Node < r.Echo[j].Node })
	plain, err := encode(r)
	if err != nil {
		return nil, nil, err
	}
	b, err := m.seal.seal(plain)
	return b, addrs, err
}

// receive reads datagrams until the connection is closed.
func (m *Members) receive(ctx context.Context) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := m.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Debug("members read failed", "err", err)
			continue
		}
		m.handle(buf[:n], from)
	}
}

// handle takes in one datagram from.
func (m *Members) handle(b []byte, from netip.AddrPort) {
	plain, err := m.seal.open(b)
	if err != nil {
		m.mu.Lock()
		m.rejected++
		m.mu.Unlock()
		m.log.Debug("members datagram refused", "from", from, "err", err)
		return
	}
	r, err := decode(plain)
	if err != nil {
		m.log.Debug("members datagram refused", "from", from, "err", err)
		return
	}
	if r.Node == m.cfg.Node {
		return
	}
	if m.take(r, from) {
		m.changed()
	}
}

// take records r if it is newer than what we have from its sender, and
// reports whether Vouched may have turned false because of it.
func (m *Members) take(r report, from netip.AddrPort) (changed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mb, had := m.members[r.Node]
	if !had {
		mb = m.member(r.Node)
		m.log.Info("members: agent heard that the API server did not list", "node", r.Node)
	}
	if !mb.addr.IsValid() {
		mb.addr = from.Addr().Unmap() // answer where it sends from
	}
	if mb.instance == r.Instance && r.Seq <= mb.seq {
		return false // replayed or reordered
	}
	newcomer := mb.heard.IsZero() || mb.instance != r.Instance
	wasReachable := mb.reachable
	if mb.instance != r.Instance {
		mb.away = time.Time{}
	}
	mb.instance, mb.seq, mb.sent = r.Instance, r.Seq, r.Sent
	mb.reachable, mb.since, mb.held, mb.heldCount = r.Reachable, r.Since, r.Held, r.HeldCount
	mb.heard = m.clock.Now()
	mb.vouch = m.echoed(r)
	if !r.Reachable {
		mb.away = mb.vouch
	}
	return !had || newcomer || (r.Reachable && !wasReachable)
}

// echoed is our send time that r echoes back (zero: none, one of a
// previous life of this agent, or one we have not reached yet).
func (m *Members) echoed(r report) time.Time {
	for _, e := range r.Echo {
		if e.Node != m.cfg.Node || e.Instance != m.cfg.Instance {
			continue
		}
		at := m.start.Add(time.Duration(e.Sent))
		if at.After(m.clock.Now()) {
			return time.Time{}
		}
		return at
	}
	return time.Time{}
}

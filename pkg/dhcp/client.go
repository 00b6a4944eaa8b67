package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Config configures a Client.
type Config struct {
	// Interface is the existing interface to run on, typically a macvlan
	// made for one Service. Its MAC address is the client hardware address
	// (chaddr), which is what the DHCP server keys the lease on.
	Interface string
	// Hostname is sent as option 12 when not empty.
	Hostname string
	// RequestedIP, when valid, is asked for (option 50) in DISCOVERs until
	// the first lease, for example the address the Service had; after that
	// the client asks for the address it last held (none after a NAK).
	RequestedIP netip.Addr
	// OnChange, if not nil, is called on Run's goroutine whenever a lease
	// is acquired or lost (NAK, expiry), and when a renewal or rebinding
	// changes Addr, Prefix, Server or Router. It is not called when a
	// renewal only moves the times. It must not block: enqueue and return.
	OnChange func()
	// Broadcast sets the BOOTP broadcast flag in every message, asking
	// servers to broadcast their replies (kube-vip.io/dhcp-broadcast).
	Broadcast bool
	// Log receives the client's logs; nil discards them.
	Log *slog.Logger
}

// Lease is an address granted by a DHCP server.
type Lease struct {
	Addr netip.Addr
	// Prefix is Addr with the length of the subnet mask option, not
	// masked (198.18.0.222/24); the zero Prefix when the server sent none.
	Prefix netip.Prefix
	Server netip.Addr // server identifier (option 54)
	Router netip.Addr // first router (option 3); the zero Addr if none
	// Acquired is when the last ACK arrived (local clock).
	Acquired time.Time
	// T1 (renew), T2 (rebind) and Expiry are absolute, counted from when
	// the REQUEST that the last ACK answered was sent: options 58, 59 and
	// 51, with T1 and T2 defaulting to 0.5 and 0.875 of the lease time.
	T1, T2, Expiry time.Time
}

// conn is the client's link: packetConn (DHCPv4), udp6Conn (DHCPv6), or a
// fake in tests.
type conn interface {
	// recv blocks until a UDP payload for the client port arrives and
	// returns it with the Ethernet address it came from, if known.
	recv() ([]byte, net.HardwareAddr, error)
	// send sends payload to dst's server port; a DHCPv4 conn sends it
	// from src:68 in a frame to dstMAC (broadcast if nil).
	send(payload []byte, src, dst netip.Addr, dstMAC net.HardwareAddr) error
	// interrupt makes a blocked recv return, and every later one until
	// resume.
	interrupt() error
	resume() error
	close() error
}

// protocol is one family's client logic (machine for DHCPv4, machine6 for
// DHCPv6), without I/O or a clock: every input carries the time it
// happened, and every step returns what to send and whether the lease
// changed. After each step, timeout is due at due().
type protocol interface {
	resume(now time.Time) ([]datagram, bool)
	timeout(now time.Time) ([]datagram, bool)
	// receive handles a UDP payload that arrived at now from Ethernet
	// address from (nil when the link does not say).
	receive(now time.Time, payload []byte, from net.HardwareAddr) ([]datagram, bool)
	// release returns the message giving the lease back, if there is one,
	// and forgets the lease.
	release() (datagram, bool)
	held() (Lease, bool) // the lease, expired or not
	due() time.Time
}

// datagram is one message to transmit.
type datagram struct {
	payload []byte
	kind    string           // message type, for logs
	src     netip.Addr       // source (DHCPv4 frames; the socket decides for DHCPv6)
	dst     netip.Addr       // destination
	dstMAC  net.HardwareAddr // Ethernet destination (DHCPv4); nil means broadcast
}

// Client keeps one DHCP lease alive on one interface.
type Client struct {
	ifname   string
	onChange func()
	log      *slog.Logger
	conn     conn
	clock    clock

	mu      sync.Mutex
	p       protocol // guarded by mu; stepped by Run, Release when Run is not running
	running bool
	closed  bool
}

// New returns a Client for cfg.Interface with its socket open, so that the
// socket lives in the network namespace of the calling thread. It needs
// CAP_NET_RAW. Call Run to acquire and keep a lease, and Close when done.
func New(cfg Config) (*Client, error) {
	if cfg.Interface == "" {
		return nil, errors.New("dhcp: no interface")
	}
	if cfg.RequestedIP.IsValid() && !cfg.RequestedIP.Unmap().Is4() {
		return nil, fmt.Errorf("dhcp: requested address %s is not IPv4", cfg.RequestedIP)
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("dhcp: %s has no Ethernet address", cfg.Interface)
	}
	c, err := openConn(ifi)
	if err != nil {
		return nil, fmt.Errorf("dhcp: %s: %w", cfg.Interface, err)
	}
	return newClient(cfg, ifi.HardwareAddr, uint16(min(max(ifi.MTU, 576), 1500)), c, realClock{}), nil
}

// New6 returns a DHCPv6 Client for cfg.Interface (one IA_NA address,
// RFC 8415), with its socket open in the network namespace of the calling
// thread. Its DUID is DUID-LL of the interface's MAC address, so the same
// MAC on another node gets the same lease. Config.Broadcast does not apply;
// Config.Hostname is sent as the FQDN option. The interface needs an IPv6
// link-local address: the kernel gives one to a macvlan brought up with
// IPv6 enabled. Lease.Prefix, Server and Router are zero (DHCPv6 has none:
// routers come from router advertisements).
func New6(cfg Config) (*Client, error) {
	if cfg.Interface == "" {
		return nil, errors.New("dhcp: no interface")
	}
	if cfg.RequestedIP.IsValid() && !usable6(cfg.RequestedIP) {
		return nil, fmt.Errorf("dhcp: requested address %s is not a global IPv6 address", cfg.RequestedIP)
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("dhcp: %s has no Ethernet address", cfg.Interface)
	}
	c, err := openConn6(ifi)
	if err != nil {
		return nil, fmt.Errorf("dhcp: %s: %w", cfg.Interface, err)
	}
	log := clientLog(cfg, ifi.HardwareAddr)
	return withProtocol(cfg, log, newMachine6(ifi.HardwareAddr, cfg, log), c, realClock{}), nil
}

func newClient(cfg Config, hw net.HardwareAddr, maxSize uint16, c conn, clk clock) *Client {
	log := clientLog(cfg, hw)
	m := &machine{
		hw:        hw,
		hostname:  cfg.Hostname,
		requested: cfg.RequestedIP.Unmap(),
		maxSize:   maxSize,
		broadcast: cfg.Broadcast,
		newXID: func() dhcpv4.TransactionID {
			var x dhcpv4.TransactionID
			binary.BigEndian.PutUint32(x[:], rand.Uint32())
			return x
		},
		log: log,
	}
	return withProtocol(cfg, log, v4{m}, c, clk)
}

func clientLog(cfg Config, hw net.HardwareAddr) *slog.Logger {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return log.With("interface", cfg.Interface, "mac", hw.String())
}

func withProtocol(cfg Config, log *slog.Logger, p protocol, c conn, clk clock) *Client {
	return &Client{ifname: cfg.Interface, onChange: cfg.OnChange, log: log, conn: c, clock: clk, p: p}
}

// received is a reply the reader passes to Run.
type received struct {
	payload []byte
	from    net.HardwareAddr
}

// Run acquires a lease and keeps it until ctx ends: DISCOVER, OFFER,
// REQUEST, ACK (or DISCOVER and a rapid-commit ACK); REQUEST unicast to the
// server from T1, broadcast from T2; at expiry or on a NAK the lease is
// dropped and acquired again. Run keeps the lease when ctx ends (it does
// not release it), so a later Run continues with it while it is valid.
//
// Run returns nil when ctx ends, or an error if the socket fails for good
// (for example because Close was called). Only one Run may run at a time.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return fmt.Errorf("dhcp: %s: client is closed", c.ifname)
	case c.running:
		c.mu.Unlock()
		return fmt.Errorf("dhcp: %s: Run is already running", c.ifname)
	}
	c.running = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	}()

	if err := c.conn.resume(); err != nil {
		return fmt.Errorf("dhcp: %s: %w", c.ifname, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	in := make(chan received, 8)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.read(ctx, in); err != nil {
			readErr <- err
		}
	})
	defer func() {
		cancel()
		if err := c.conn.interrupt(); err != nil && !c.isClosed() {
			c.log.Warn("cannot interrupt DHCP receive", "err", err)
		}
		wg.Wait()
	}()

	t := c.clock.NewTimer()
	defer t.Stop()
	c.step(func(p protocol, now time.Time) ([]datagram, bool) { return p.resume(now) }, t)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return fmt.Errorf("dhcp: %s: receive: %w", c.ifname, err)
		case <-t.C():
			c.step(func(p protocol, now time.Time) ([]datagram, bool) { return p.timeout(now) }, t)
		case r := <-in:
			c.step(func(p protocol, now time.Time) ([]datagram, bool) { return p.receive(now, r.payload, r.from) }, t)
		}
	}
}

// step runs one machine step under the lock, sends what it returns, resets
// t to the machine's next timeout and calls OnChange if the lease changed.
func (c *Client) step(f func(protocol, time.Time) ([]datagram, bool), t timer) {
	c.mu.Lock()
	out, changed := f(c.p, c.clock.Now())
	for _, o := range out {
		if err := c.send(o); err != nil {
			// Like a lost packet: the schedule retransmits.
			c.log.Warn("DHCP send failed", "type", o.kind, "dst", o.dst, "err", err)
		}
	}
	next := c.p.due()
	c.mu.Unlock()
	t.Reset(next)
	if changed && c.onChange != nil {
		c.onChange()
	}
}

func (c *Client) send(o datagram) error {
	c.log.Debug("DHCP send", "type", o.kind, "src", o.src, "dst", o.dst)
	return c.conn.send(o.payload, o.src, o.dst, o.dstMAC)
}

// read passes replies for this client to in until ctx ends. It returns an
// error only if the socket fails for good.
func (c *Client) read(ctx context.Context, in chan<- received) error {
	var t timer // backs off after transient errors
	for {
		payload, from, err := c.conn.recv()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if c.isClosed() {
				return fmt.Errorf("client closed: %w", err)
			}
			// For example ENETDOWN while the interface is down: keep
			// listening, but not in a tight loop.
			c.log.Warn("DHCP receive failed", "err", err)
			if t == nil {
				t = c.clock.NewTimer()
				defer t.Stop()
			}
			t.Reset(c.clock.Now().Add(time.Second))
			select {
			case <-ctx.Done():
				return nil
			case <-t.C():
			}
			continue
		}
		select {
		case in <- received{slices.Clone(payload), from}:
		case <-ctx.Done():
			return nil
		}
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Lease returns the current lease, if there is one and it has not expired.
func (c *Client) Lease() (Lease, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.p.held()
	if !ok || !c.clock.Now().Before(l.Expiry) {
		return Lease{}, false
	}
	return l, true
}

// Release sends a DHCPRELEASE for the current lease to its server (unicast)
// and forgets the lease, even if the send fails. It does nothing without a
// lease. It is for when Run has returned (the Service went away or moved);
// while Run runs it returns an error. OnChange is not called.
func (c *Client) Release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.running:
		return fmt.Errorf("dhcp: %s: Release while Run is running", c.ifname)
	case c.closed:
		return fmt.Errorf("dhcp: %s: client is closed", c.ifname)
	}
	l, held := c.p.held()
	valid := held && c.clock.Now().Before(l.Expiry)
	addr := l.Addr
	o, ok := c.p.release()
	if !ok || !valid {
		return nil
	}
	c.log.Info("releasing DHCP lease", "addr", addr, "server", o.dst)
	if err := c.send(o); err != nil {
		return fmt.Errorf("dhcp: %s: release %s: %w", c.ifname, addr, err)
	}
	return nil
}

// Close closes the client's socket. A running Run returns with an error.
// Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if err := c.conn.close(); err != nil {
		return fmt.Errorf("dhcp: %s: close: %w", c.ifname, err)
	}
	return nil
}

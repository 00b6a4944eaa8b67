package bgpspec

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// Config is the speaker's own identity.
type Config struct {
	// ASN is the local AS number (1 to 4294967295).
	ASN uint32
	// RouterID is the BGP identifier; it must be an IPv4 address.
	RouterID netip.Addr
	// ListenPort is the TCP port to accept sessions on; 0 or -1 (the
	// default) only dials out, which lets the speaker coexist with a CNI's
	// BGP speaker on port 179.
	ListenPort int32
	// ListenAddresses are the addresses to listen on when ListenPort > 0
	// (default: every address, 0.0.0.0 and ::).
	ListenAddresses []netip.Addr
	// SourceAddress is the default local address of sessions (optional).
	SourceAddress netip.Addr
	// Log receives the speaker's logs (default slog.Default()).
	Log *slog.Logger
	// Clock times the bounded shutdown wait (default clock.Real).
	Clock clock.Clock
}

// Peer is one configured BGP session.
type Peer struct {
	Address netip.Addr
	// Port is the peer's TCP port (0 means 179).
	Port uint16
	ASN  uint32
	// LocalASN is the AS the speaker presents to this peer (MetalLB's
	// myASN); 0 means Config.ASN.
	LocalASN uint32
	// Password enables TCP-MD5 (RFC 2385) when not empty.
	Password string
	// HoldTime, KeepaliveTime and ConnectTime are rounded up to whole
	// seconds. Zero hold and keepalive times take GoBGP's defaults (90 s, a
	// third of the hold time); a zero ConnectTime (the wait between two
	// connection attempts) is DefaultConnectTime, not GoBGP's 120 s. GoBGP
	// makes its first attempt 1.5-2 s after a peer is added or a session
	// drops.
	HoldTime, KeepaliveTime, ConnectTime time.Duration
	// EBGPMultiHop is the TTL of an eBGP session to a peer that is not
	// directly connected; 0 leaves it off.
	EBGPMultiHop uint8
	// BFD enables single-hop BFD for the session when not nil.
	BFD *BFD
	// GracefulRestart advertises the graceful restart capability (off by
	// default: a router would keep a dead node's routes for the restart
	// time).
	GracefulRestart bool
	// SourceAddress is the local address of this session (optional; default
	// Config.SourceAddress, else the kernel's choice).
	SourceAddress netip.Addr
}

// BFD is a session's BFD profile.
type BFD struct {
	// ReceiveInterval and TransmitInterval are the minimum intervals
	// (default 300 ms each); they are sent to GoBGP in microseconds.
	ReceiveInterval, TransmitInterval time.Duration
	// DetectMultiplier is the number of missed packets that declares the
	// session down (default 3).
	DetectMultiplier uint32
}

// Route is one announced prefix.
type Route struct {
	Prefix netip.Prefix
	// NextHop is the route's next hop; zero means the speaker's own address
	// on each session (next hop self).
	NextHop netip.Addr
	// LocalPref is sent to iBGP peers when not 0.
	LocalPref uint32
	// Communities are standard communities (see ParseCommunity).
	Communities []uint32
	// LargeCommunities are RFC 8092 large communities.
	LargeCommunities []LargeCommunity
	// Peers restricts the route to these peers; nil or empty means all.
	Peers []netip.Addr
}

// LargeCommunity is an RFC 8092 large community, Global:Local1:Local2.
type LargeCommunity struct{ Global, Local1, Local2 uint32 }

// PeerState is a session's state as the speaker sees it.
type PeerState struct {
	Address netip.Addr
	ASN     uint32
	// State is "idle", "connect", "active", "opensent", "openconfirm" or
	// "established".
	State string
	// Since is when State was entered (zero if not seen yet).
	Since time.Time
	// LastError is why the session last went down (empty if it never did).
	LastError string
	// PrefixesSent is the number of prefixes advertised on the session.
	PrefixesSent int
	// UpdatesSent counts the UPDATE messages sent on the session (GoBGP's
	// counter; it restarts with the session).
	UpdatesSent uint64
}

// DefaultConnectTime is the wait between two connection attempts to a
// peer when Peer.ConnectTime is 0.
//
// 3 s: after a link comes back (a cable, a switch reboot), the session is up
// again within about that, rather than after GoBGP's 120 s or a 10 s
// timer; the cost is one TCP SYN every 3 s to a peer that is away. The
// fault campaign caught a Local BGP Service, held by the only node with its
// endpoint, unannounced for 6 s after the cable came back while the 10 s
// timer ran.
const DefaultConnectTime = 3 * time.Second

// ErrStopped is returned by calls made after Run has returned.
var ErrStopped = errors.New("bgp: speaker stopped")

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	if c.ASN == 0 {
		return errors.New("bgp: ASN must be 1 to 4294967295, not 0")
	}
	if !c.RouterID.Is4() {
		return fmt.Errorf("bgp: router id %q is not an IPv4 address", c.RouterID)
	}
	if c.ListenPort > 65535 || c.ListenPort < -1 {
		return fmt.Errorf("bgp: listen port %d out of range", c.ListenPort)
	}
	return nil
}

// Validate reports what is wrong with p.
func (p Peer) Validate() error {
	switch {
	case !p.Address.IsValid() || p.Address.IsUnspecified():
		return fmt.Errorf("bgp: peer address %q is not a unicast address", p.Address)
	case p.ASN == 0:
		return fmt.Errorf("bgp: peer %s: ASN must be 1 to 4294967295, not 0", p.Address)
	case p.HoldTime < 0 || p.KeepaliveTime < 0 || p.ConnectTime < 0:
		return fmt.Errorf("bgp: peer %s: negative timer", p.Address)
	case p.HoldTime > 0 && p.HoldTime < 3*time.Second:
		return fmt.Errorf("bgp: peer %s: hold time %v is below 3s", p.Address, p.HoldTime)
	}
	if p.BFD != nil && (p.BFD.ReceiveInterval < 0 || p.BFD.TransmitInterval < 0) {
		return fmt.Errorf("bgp: peer %s: negative BFD interval", p.Address)
	}
	return nil
}

// Validate reports what is wrong with r.
func (r Route) Validate() error {
	if !r.Prefix.IsValid() {
		return errors.New("bgp: route without a prefix")
	}
	if r.Prefix != r.Prefix.Masked() {
		return fmt.Errorf("bgp: route %s has host bits set", r.Prefix)
	}
	if r.NextHop.IsValid() && r.NextHop.Is4() != r.Prefix.Addr().Is4() {
		return fmt.Errorf("bgp: route %s: next hop %s is of another family", r.Prefix, r.NextHop)
	}
	return nil
}

// Equal reports whether two routes send the same UPDATE to the same peers.
func (r Route) Equal(o Route) bool {
	return r.Prefix == o.Prefix && r.NextHop == o.NextHop && r.LocalPref == o.LocalPref &&
		slices.Equal(r.Communities, o.Communities) && slices.Equal(r.LargeCommunities, o.LargeCommunities) &&
		slices.Equal(r.Peers, o.Peers)
}

// Restricted reports whether r goes only to some peers.
func (r Route) Restricted() bool { return len(r.Peers) > 0 }

// ParseCommunity parses a standard community, "65000:100" (AS:value, each
// 0-65535) or a plain 32-bit number.
func ParseCommunity(s string) (uint32, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		v, err := strconv.ParseUint(hi, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("bgp: community %q: want AS:value or a 32-bit number: %w", s, err)
		}
		return uint32(v), nil
	}
	a, err := strconv.ParseUint(hi, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bgp: community %q: AS part: %w", s, err)
	}
	b, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bgp: community %q: value part: %w", s, err)
	}
	return uint32(a)<<16 | uint32(b), nil
}

// FormatCommunity is the inverse of ParseCommunity: "AS:value".
func FormatCommunity(c uint32) string {
	return strconv.FormatUint(uint64(c>>16), 10) + ":" + strconv.FormatUint(uint64(c&0xffff), 10)
}

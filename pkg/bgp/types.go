package bgp

import "github.com/vigil-lb/vigil/pkg/bgpspec"

// The speaker's vocabulary is pkg/bgpspec's, so that a process can describe
// peers and routes without linking GoBGP.
type (
	// Config is the speaker's own identity.
	Config = bgpspec.Config
	// Peer is one configured BGP session.
	Peer = bgpspec.Peer
	// BFD is a session's BFD profile.
	BFD = bgpspec.BFD
	// Route is one announced prefix.
	Route = bgpspec.Route
	// LargeCommunity is an RFC 8092 large community.
	LargeCommunity = bgpspec.LargeCommunity
	// PeerState is a session's state as the speaker sees it.
	PeerState = bgpspec.PeerState
)

// DefaultConnectTime is the wait between two connection attempts to a peer
// when Peer.ConnectTime is 0.
const DefaultConnectTime = bgpspec.DefaultConnectTime

// ErrStopped is returned by calls made after Run has returned.
var ErrStopped = bgpspec.ErrStopped

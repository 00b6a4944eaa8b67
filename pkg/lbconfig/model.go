package lbconfig

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Speaker is this node's BGP speaker.
type Speaker struct {
	ASN      uint32     // bgp_as (default 65000)
	RouterID netip.Addr // IPv4; zero: the node's address
	// ListenPort: -1 dials out only (the default, so a CNI's speaker keeps
	// port 179); > 0 also listens.
	ListenPort    int32
	SourceAddress netip.Addr // bgp_sourceip
	SourceIF      string     // bgp_sourceif
}

// Peer is one BGP neighbour.
type Peer struct {
	Name          string // for status and Events (the object name, or the address)
	Address       netip.Addr
	Port          uint16 // 0: 179
	ASN           uint32 // the peer's
	MyASN         uint32 // 0: the speaker's
	Password      string // TCP-MD5; empty: none
	HoldTime      time.Duration
	KeepaliveTime time.Duration
	ConnectTime   time.Duration
	EBGPMultiHop  bool
	BFD           *BFD // nil: off
	// GracefulRestart only when the peer asks for it: the router would
	// otherwise keep a dead node's routes for the restart time.
	GracefulRestart bool
	SourceAddress   netip.Addr
	// RouterID is the router id this node's speaker uses (IPv4); zero: the
	// speaker's own. See RouterID.
	RouterID netip.Addr
	// Nodes selects the nodes that peer with it (any selector; none: every
	// node).
	Nodes []*Selector
}

// BFD is a BFD profile (single hop).
type BFD struct {
	ReceiveInterval  time.Duration
	TransmitInterval time.Duration
	DetectMultiplier uint32
}

// Selector picks objects (nodes, pools) by their labels, as Kubernetes
// label selectors and MetalLB's / Kontena's node-selectors do:
// match-labels and match-expressions ANDed.
type Selector struct {
	MatchLabels      map[string]string
	MatchExpressions []Requirement
}

// Requirement is one match expression.
type Requirement struct {
	Key      string
	Operator string // In, NotIn, Exists, DoesNotExist
	Values   []string
}

// Matches reports whether a node with these labels is selected.
func (s *Selector) Matches(labels map[string]string) bool {
	if s == nil {
		return true
	}
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		if !r.matches(labels) {
			return false
		}
	}
	return true
}

func (r Requirement) matches(labels map[string]string) bool {
	v, has := labels[r.Key]
	switch r.Operator {
	case "In":
		return has && contains(r.Values, v)
	case "NotIn":
		return !has || !contains(r.Values, v)
	case "Exists":
		return has
	case "DoesNotExist":
		return !has
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SelectsNode reports whether a node with these labels peers with p.
func (p Peer) SelectsNode(labels map[string]string) bool { return AnyMatches(p.Nodes, labels) }

// Validate checks a peer; the error names the field.
func (p Peer) Validate() error {
	var errs []error
	if !p.Address.IsValid() {
		errs = append(errs, errors.New("peerAddress: missing"))
	}
	if p.ASN == 0 {
		errs = append(errs, errors.New("peerASN: must be 1-4294967295"))
	}
	if p.HoldTime != 0 && (p.HoldTime < 3*time.Second || p.HoldTime > 65535*time.Second) {
		errs = append(errs, fmt.Errorf("holdTime: %v is not 0 or 3s-65535s", p.HoldTime))
	}
	if p.KeepaliveTime != 0 && p.HoldTime != 0 && p.KeepaliveTime > p.HoldTime {
		errs = append(errs, fmt.Errorf("keepaliveTime: %v is longer than holdTime %v", p.KeepaliveTime, p.HoldTime))
	}
	if p.BFD != nil {
		errs = append(errs, p.BFD.Validate())
	}
	if p.RouterID.IsValid() && !p.RouterID.Is4() {
		errs = append(errs, fmt.Errorf("routerID: %s is not an IPv4 address", p.RouterID))
	}
	return errors.Join(errs...)
}

// Validate checks a BFD profile (MetalLB's ranges: intervals 10-60000 ms,
// multiplier 2-255).
func (b BFD) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"receiveInterval", b.ReceiveInterval}, {"transmitInterval", b.TransmitInterval}} {
		if f.d < 10*time.Millisecond || f.d > 60*time.Second {
			errs = append(errs, fmt.Errorf("%s: %v is not 10ms-60s", f.name, f.d))
		}
	}
	if b.DetectMultiplier < 2 || b.DetectMultiplier > 255 {
		errs = append(errs, fmt.Errorf("detectMultiplier: %d is not 2-255", b.DetectMultiplier))
	}
	return errors.Join(errs...)
}

// Validate checks the speaker.
func (s Speaker) Validate() error {
	var errs []error
	if s.ASN == 0 {
		errs = append(errs, errors.New("ASN: must be 1-4294967295"))
	}
	if s.RouterID.IsValid() && !s.RouterID.Is4() {
		errs = append(errs, fmt.Errorf("router id %s: must be an IPv4 address", s.RouterID))
	}
	return errors.Join(errs...)
}

// RouterID is the router id of a speaker whose peers are peers: the one
// their RouterID fields name, or def when none does. A speaker has one
// router id (GoBGP, like FRR per VRF), so peers naming different ones are
// an error, and def is used.
func RouterID(peers []Peer, def netip.Addr) (netip.Addr, error) {
	var id netip.Addr
	var from string
	for _, p := range peers {
		switch {
		case !p.RouterID.IsValid() || p.RouterID == id:
		case !id.IsValid():
			id, from = p.RouterID, p.Name
		default:
			return def, fmt.Errorf("peers %s and %s name different router ids (%s, %s); a node has one: using %s",
				from, p.Name, id, p.RouterID, def)
		}
	}
	if !id.IsValid() {
		return def, nil
	}
	return id, nil
}

package nodestatus

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

const (
	// LeasePrefix starts the name of every node's Lease.
	LeasePrefix = "vigil-node-"
	// PeersAnnotation holds the node's BGP sessions as JSON.
	PeersAnnotation = "vigil.io/bgp-peers"
	// ManagedByLabel and ManagedByValue label every Lease vigil writes.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "vigil"
)

// Peer is one BGP session of a node.
type Peer struct {
	Peer  string `json:"peer"`
	ASN   uint32 `json:"asn"`
	State string `json:"state"`
	// Since is when the session entered State (whole seconds, UTC).
	Since     time.Time `json:"since,omitzero"`
	Prefixes  int       `json:"prefixes"`
	LastError string    `json:"lastError,omitempty"`
}

// Node is one node's published sessions, as read from its Lease.
type Node struct {
	Name  string
	Peers []Peer
	// Err says why the annotation could not be read (Peers is empty then).
	Err error
}

// LeaseName is the name of node's Lease.
func LeaseName(node string) string { return LeasePrefix + node }

// Encode is the annotation value for peers: compact JSON, sorted by peer,
// times in whole UTC seconds, so equal sessions encode equally.
func Encode(peers []Peer) (string, error) {
	out := make([]Peer, len(peers))
	for i, p := range peers {
		if !p.Since.IsZero() {
			p.Since = p.Since.UTC().Truncate(time.Second)
		}
		out[i] = p
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Peer, b.Peer) })
	b, err := json.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("nodestatus: encode peers: %w", err)
	}
	return string(b), nil
}

// Decode parses an annotation value written by Encode.
func Decode(s string) ([]Peer, error) {
	var peers []Peer
	if err := json.Unmarshal([]byte(s), &peers); err != nil {
		return nil, fmt.Errorf("nodestatus: %s: %w", PeersAnnotation, err)
	}
	return peers, nil
}

// Read picks the node Leases holding sessions out of leases (by name
// prefix, label and annotation) and decodes them, sorted by node name.
func Read(leases []coordinationv1.Lease) []Node {
	var out []Node
	for i := range leases {
		l := &leases[i]
		name, ok := strings.CutPrefix(l.Name, LeasePrefix)
		if !ok || name == "" || l.Labels[ManagedByLabel] != ManagedByValue {
			continue
		}
		v, ok := l.Annotations[PeersAnnotation]
		if !ok {
			continue // a node Lease with other records only (e.g. members)
		}
		n := Node{Name: name}
		n.Peers, n.Err = Decode(v)
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

package nodestatus

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MembersAnnotation holds the agent's LAN liveness record as compact JSON:
//
//	{"on":true,"key":"sha256:1f0c…","port":7947,"api":true,
//	 "seen":[{"node":"node2","api":false}]}
//
// Every agent writes it at start, members on or off: the others keep VIPs
// through an API outage only if every agent recorded here runs with
// members on and the same key fingerprint.
const MembersAnnotation = "vigil.io/members"

// Members is one agent's LAN liveness record.
type Members struct {
	On   bool   `json:"on"`
	Key  string `json:"key,omitempty"`  // key fingerprint
	Port int    `json:"port,omitempty"` // where it listens
	// API and Seen are the agent's view when it last wrote the record.
	API  bool         `json:"api"`
	Seen []SeenMember `json:"seen,omitempty"`
}

// SeenMember is another agent as one agent hears it on the LAN.
type SeenMember struct {
	Node string `json:"node"`
	API  bool   `json:"api"` // its latest report says it reaches the API
}

// EncodeMembers is the annotation value for m, Seen sorted by node.
func EncodeMembers(m Members) (string, error) {
	m.Seen = slices.Clone(m.Seen)
	slices.SortFunc(m.Seen, func(a, b SeenMember) int { return strings.Compare(a.Node, b.Node) })
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("nodestatus: encode members: %w", err)
	}
	return string(b), nil
}

// DecodeMembers parses an annotation value written by EncodeMembers.
func DecodeMembers(s string) (Members, error) {
	var m Members
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return Members{}, fmt.Errorf("nodestatus: %s: %w", MembersAnnotation, err)
	}
	return m, nil
}

// ReadMembers returns the members record of every node Lease in leases
// (ok false: the Lease has none), keyed by node.
func ReadMembers(leases []coordinationv1.Lease) map[string]MembersRecord {
	out := map[string]MembersRecord{}
	for i := range leases {
		l := &leases[i]
		name, ok := strings.CutPrefix(l.Name, LeasePrefix)
		if !ok || name == "" || l.Labels[ManagedByLabel] != ManagedByValue {
			continue
		}
		var r MembersRecord
		if v, ok := l.Annotations[MembersAnnotation]; ok {
			r.Members, r.Err = DecodeMembers(v)
			r.OK = r.Err == nil
		}
		out[name] = r
	}
	return out
}

// MembersRecord is a node Lease's members record as read.
type MembersRecord struct {
	Members
	OK  bool  // present and readable
	Err error // unreadable
}

// Annotate makes node's Lease in leases carry annotation key=value (and
// vigil's label), creating the Lease if needed. A conflict is an error:
// the caller tries again later.
func Annotate(ctx context.Context, client LeasesGetter, namespace, node, key, value string) error {
	leases := client.Leases(namespace)
	name := LeaseName(node)
	cur, err := leases.Get(ctx, name, metav1.GetOptions{})
	create := apierrors.IsNotFound(err)
	switch {
	case create:
		cur = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}
	case err != nil:
		return fmt.Errorf("nodestatus: get lease %s: %w", name, err)
	case cur.Annotations[key] == value && cur.Labels[ManagedByLabel] == ManagedByValue:
		return nil
	}
	l := cur.DeepCopy()
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Labels[ManagedByLabel] = ManagedByValue
	l.Annotations[key] = value
	if create {
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("nodestatus: write lease %s: %w", name, err)
	}
	return nil
}

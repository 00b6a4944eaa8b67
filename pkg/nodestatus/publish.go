package nodestatus

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/kubeclient"
)

// Publisher writes one node's sessions to its Lease. It is not safe for
// concurrent use: one goroutine owns it.
type Publisher struct {
	leases    kubeclient.Leases
	name      string
	published string // the annotation value the Lease is known to hold
	known     bool   // published is set
}

// LeasesGetter gives the Leases of a namespace: a *kubeclient.Clientset.
type LeasesGetter interface {
	Leases(namespace string) kubeclient.Leases
}

// NewPublisher publishes node's sessions in namespace.
func NewPublisher(client LeasesGetter, namespace, node string) *Publisher {
	return &Publisher{leases: client.Leases(namespace), name: LeaseName(node)}
}

// Publish makes the Lease hold peers and reports whether it wrote. Sessions
// equal to the last ones published cost no API call; otherwise it reads
// the Lease and creates it, or updates it at the resourceVersion it read
// (a conflict is an error: the next call tries again).
func (p *Publisher) Publish(ctx context.Context, peers []Peer) (bool, error) {
	v, err := Encode(peers)
	if err != nil {
		return false, err
	}
	if p.known && v == p.published {
		return false, nil
	}
	cur, err := p.leases.Get(ctx, p.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = p.leases.Create(ctx, p.lease(&coordinationv1.Lease{}, v), metav1.CreateOptions{})
		return p.wrote(v, "create", err)
	case err != nil:
		return false, fmt.Errorf("nodestatus: get lease %s: %w", p.name, err)
	case cur.Annotations[PeersAnnotation] == v && cur.Labels[ManagedByLabel] == ManagedByValue:
		p.published, p.known = v, true
		return false, nil
	}
	_, err = p.leases.Update(ctx, p.lease(cur, v), metav1.UpdateOptions{})
	return p.wrote(v, "update", err)
}

// lease is l carrying the annotation v and vigil's label.
func (p *Publisher) lease(l *coordinationv1.Lease, v string) *coordinationv1.Lease {
	l = l.DeepCopy()
	l.Name = p.name
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[ManagedByLabel] = ManagedByValue
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[PeersAnnotation] = v
	return l
}

func (p *Publisher) wrote(v, verb string, err error) (bool, error) {
	if err != nil {
		p.known = false
		return false, fmt.Errorf("nodestatus: %s lease %s: %w", verb, p.name, err)
	}
	p.published, p.known = v, true
	return true, nil
}

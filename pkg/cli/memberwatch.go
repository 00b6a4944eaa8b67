package cli

import (
	"context"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/members"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

// agentWatch keeps the agents' node Leases and the Nodes in watched caches,
// so an agent that starts is known to the others within a watch round
// trip, and the list survives an outage as it was.
type agentWatch struct {
	infs   kubeclient.Informers
	leases cache.Indexer
	nodes  cache.Indexer
	synced []cache.InformerSynced
}

func newAgentWatch(leaseClient, client *kubeclient.Clientset, namespace string) (*agentWatch, error) {
	li, err := kubeclient.NewInformer(leaseClient.Leases(namespace), leaseClient, &coordinationv1.Lease{}, kubeclient.InformerOptions{
		Tweak: func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{nodestatus.ManagedByLabel: nodestatus.ManagedByValue}.String()
		},
	})
	if err != nil {
		return nil, err
	}
	ni, err := kubeclient.NewInformer(client.Nodes(), client, &corev1.Node{}, kubeclient.InformerOptions{})
	if err != nil {
		return nil, err
	}
	w := &agentWatch{leases: li.GetIndexer(), nodes: ni.GetIndexer(), synced: []cache.InformerSynced{li.HasSynced, ni.HasSynced}}
	w.infs.Add(li)
	w.infs.Add(ni)
	return w, nil
}

// start runs the watches until ctx ends; stop waits for them.
func (w *agentWatch) start(ctx context.Context) {
	w.infs.Start(ctx.Done())
}

func (w *agentWatch) stop() {
	w.infs.Shutdown()
}

// peers is the known agents (ok false until both caches are filled).
func (w *agentWatch) peers() ([]members.Peer, bool) {
	for _, s := range w.synced {
		if !s() {
			return nil, false
		}
	}
	leases := make([]coordinationv1.Lease, 0, len(w.leases.List()))
	for _, o := range w.leases.List() {
		if l, ok := o.(*coordinationv1.Lease); ok {
			leases = append(leases, *l)
		}
	}
	var nodes []corev1.Node
	for _, o := range w.nodes.List() {
		if n, ok := o.(*corev1.Node); ok {
			nodes = append(nodes, *n)
		}
	}
	return knownPeers(nodestatus.ReadMembers(leases), nodes), true
}

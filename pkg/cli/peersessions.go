package cli

import (
	"context"
	"net/netip"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/pkg/crdconfig"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

// nodeSessions follows the node Leases where every agent publishes its BGP
// sessions, and answers the BGPPeer status writer: which node has which
// session with a peer. changed is called on every Lease event; it must only
// enqueue.
type nodeSessions struct {
	infs   kubeclient.Informers
	leases coordinationlisters.LeaseNamespaceLister
	synced cache.InformerSynced
}

func newNodeSessions(client *kubeclient.Clientset, namespace string, changed func()) (*nodeSessions, error) {
	inf, err := kubeclient.NewInformer(client.Leases(namespace), client, &coordinationv1.Lease{}, kubeclient.InformerOptions{
		Tweak: func(o *metav1.ListOptions) {
			o.LabelSelector = nodestatus.ManagedByLabel + "=" + nodestatus.ManagedByValue
		},
	})
	if err != nil {
		return nil, err
	}
	kick := func(any) { changed() }
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick, UpdateFunc: func(_, o any) { kick(o) }, DeleteFunc: kick,
	})
	if err != nil {
		return nil, err
	}
	n := &nodeSessions{leases: coordinationlisters.NewLeaseLister(inf.GetIndexer()).Leases(namespace), synced: reg.HasSynced}
	n.infs.Add(inf)
	return n, nil
}

// Run follows the Leases until ctx ends.
func (n *nodeSessions) Run(ctx context.Context) {
	n.infs.Start(ctx.Done())
	<-ctx.Done()
	n.infs.Shutdown()
}

// Sessions lists every node's published session with peer (and AS).
func (n *nodeSessions) Sessions(peer netip.Addr, asn uint32) []crdconfig.Session {
	if !n.synced() {
		return nil
	}
	list, err := n.leases.List(labels.Everything())
	if err != nil {
		return nil // a lister does not fail
	}
	leases := make([]coordinationv1.Lease, len(list))
	for i, l := range list {
		leases[i] = *l
	}
	return sessionsWith(nodestatus.Read(leases), peer, asn)
}

// sessionsWith picks each node's session with peer out of nodes.
func sessionsWith(nodes []nodestatus.Node, peer netip.Addr, asn uint32) []crdconfig.Session {
	var out []crdconfig.Session
	for _, n := range nodes {
		for _, p := range n.Peers {
			if a, err := netip.ParseAddr(p.Peer); err == nil && a == peer && p.ASN == asn {
				out = append(out, crdconfig.Session{Node: n.Name, State: p.State, LastError: p.LastError})
			}
		}
	}
	return out
}

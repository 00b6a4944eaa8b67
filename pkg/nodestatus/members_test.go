package nodestatus_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

func TestMembersRecord(t *testing.T) {
	v, err := nodestatus.EncodeMembers(nodestatus.Members{On: true, Key: "sha256:00", Port: 7947, API: true,
		Seen: []nodestatus.SeenMember{{Node: "node3"}, {Node: "node2", API: true}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"on":true,"key":"sha256:00","port":7947,"api":true,"seen":[{"node":"node2","api":true},{"node":"node3","api":false}]}`
	if v != want {
		t.Errorf("EncodeMembers = %s\nwant          %s", v, want)
	}
	leases := []coordinationv1.Lease{
		nodeLease("vigil-node-node1", "vigil", "-"),
		nodeLease("vigil-node-node2", "vigil", "-"),
		nodeLease("vigil-node-node3", "vigil", "-"),
		nodeLease("vigil-node-node4", "someone-else", "-"),
	}
	leases[0].Annotations = map[string]string{nodestatus.MembersAnnotation: v}
	leases[1].Annotations = map[string]string{nodestatus.MembersAnnotation: "{not json"}
	got := nodestatus.ReadMembers(leases)
	if len(got) != 3 || !got["node1"].OK || got["node2"].Err == nil || got["node3"].OK || got["node3"].Err != nil {
		t.Errorf("ReadMembers = %+v; want node1 read, node2 unreadable, node3 without a record, node4 left out", got)
	}
}

// Annotate creates the node Lease, then updates it keeping what else it
// holds.
func TestAnnotate(t *testing.T) {
	client := fake.NewClientset()
	ctx := context.Background()
	if err := nodestatus.Annotate(ctx, kubeclienttest.Wrap(client), "kube-system", "node1", nodestatus.MembersAnnotation, `{"on":false,"api":false}`); err != nil {
		t.Fatal(err)
	}
	leases := client.CoordinationV1().Leases("kube-system")
	l, err := leases.Get(ctx, "vigil-node-node1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Annotations[nodestatus.PeersAnnotation] = "[]"
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := nodestatus.Annotate(ctx, kubeclienttest.Wrap(client), "kube-system", "node1", nodestatus.MembersAnnotation, `{"on":true,"api":true}`); err != nil {
		t.Fatal(err)
	}
	l, err = leases.Get(ctx, "vigil-node-node1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{nodestatus.PeersAnnotation: "[]", nodestatus.MembersAnnotation: `{"on":true,"api":true}`}
	if diff := cmp.Diff(want, l.Annotations); diff != "" || l.Labels[nodestatus.ManagedByLabel] != "vigil" {
		t.Errorf("annotations (-want +got):\n%s\nlabels %v", diff, l.Labels)
	}
}

package election

import (
	"context"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
)

// Only vigil's Leases are deleted; a missing one is no error.
func TestJanitorDeletesOnlyVigilLeases(t *testing.T) {
	ours := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubevip-web", Labels: map[string]string{ManagedByLabel: ManagedByValue}}}
	theirs := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kubevip-db"}}
	cs := fake.NewClientset(ours, theirs)
	j := Janitor{Client: kubeclienttest.Wrap(cs)}
	for _, name := range []string{"kubevip-web", "kubevip-db", "kubevip-gone"} {
		if err := j.DeleteUnheld(context.Background(), Key{"default", name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := cs.CoordinationV1().Leases("default").Get(context.Background(), "kubevip-web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("vigil's Lease still there: %v", err)
	}
	if _, err := cs.CoordinationV1().Leases("default").Get(context.Background(), "kubevip-db", metav1.GetOptions{}); err != nil {
		t.Errorf("a Lease not labelled as vigil's was deleted: %v", err)
	}
}

//go:build e2e

package e2e

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/testing/lab"
)

// The Lease of a deleted Service is deleted (issue 11); a Lease of the same
// form that vigil did not write is left alone.
func TestLeaseOfDeletedServiceCleanedUp(t *testing.T) {
	c := newCluster(t, 3)
	c.startAll("vigil_log_level=info")
	foreign := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: "kubevip-foreign"}}
	if _, err := c.cs.CoordinationV1().Leases(c.ns).Create(c.ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.announced("web", mustAddr("198.18.0.150"))
	leases := c.cs.CoordinationV1().Leases(c.ns)
	if _, err := leases.Get(c.ctx, "kubevip-web", metav1.GetOptions{}); err != nil {
		t.Fatalf("no Lease for an announced Service: %v", err)
	}
	if err := c.cs.CoreV1().Services(c.ns).Delete(c.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitFor(c.ctx, 10*time.Second, func() bool {
		_, err := leases.Get(c.ctx, "kubevip-web", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}); err != nil {
		t.Errorf("Lease of the deleted Service still there after 10s")
	}
	if _, err := leases.Get(c.ctx, "kubevip-foreign", metav1.GetOptions{}); err != nil {
		t.Errorf("a Lease vigil did not write was touched: %v", err)
	}
}

package election

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Janitor deletes the Leases of Services that are gone.
type Janitor struct{ Client Client }

// DeleteUnheld deletes key's Lease if it is vigil's (labelled
// ManagedByLabel=ManagedByValue), guarded by the resourceVersion just read:
// a Lease written in between (a Service re-created and its Lease taken) is
// left alone. The caller has seen no live holder. A Lease that is already
// gone, or changed meanwhile, is not an error.
func (j Janitor) DeleteUnheld(ctx context.Context, key Key) error {
	leases := j.Client.Leases(key.Namespace)
	l, err := leases.Get(ctx, key.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("lease clean-up %s: %w", key, err)
	case l.Labels[ManagedByLabel] != ManagedByValue:
		return nil // not ours to delete
	}
	rv := l.ResourceVersion
	err = leases.Delete(ctx, key.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("lease clean-up %s: %w", key, err)
	}
	return nil
}

package kube

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
)

// Slim is an informer transform dropping what vigil never reads from the
// objects it caches: managedFields (often the largest part of a Service)
// and a Node's image list. Writes built from a slimmed object leave the
// server's managedFields as they are (an update without them keeps them).
func Slim(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	if n, ok := obj.(*corev1.Node); ok {
		n.Status.Images = nil
	}
	return obj, nil
}

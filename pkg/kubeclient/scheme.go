package kubeclient

import (
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// NewScheme returns a scheme of the API groups vigil uses, and of the
// unversioned meta types (Status, APIResourceList) every client decodes.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	groups := []struct {
		gv  schema.GroupVersion
		add func(*runtime.Scheme) error
	}{
		{corev1.SchemeGroupVersion, corev1.AddToScheme},
		{coordinationv1.SchemeGroupVersion, coordinationv1.AddToScheme},
		{discoveryv1.SchemeGroupVersion, discoveryv1.AddToScheme},
		{admissionregistrationv1.SchemeGroupVersion, admissionregistrationv1.AddToScheme},
	}
	for _, g := range groups {
		if err := g.add(s); err != nil {
			return nil, fmt.Errorf("scheme: register %s: %w", g.gv, err)
		}
	}
	return s, nil
}

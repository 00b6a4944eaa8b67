package kubeclient

import (
	"context"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// Resource is a typed client of one resource (in one namespace, or
// cluster-scoped): T is its object, L its list. client-go's typed clients,
// real and fake, have these methods.
type Resource[T, L any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// StatusResource is a Resource with a status subresource.
type StatusResource[T, L any] interface {
	Resource[T, L]
	UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// The typed clients vigil uses.
type (
	Services       = StatusResource[*corev1.Service, *corev1.ServiceList]
	Nodes          = StatusResource[*corev1.Node, *corev1.NodeList]
	Namespaces     = StatusResource[*corev1.Namespace, *corev1.NamespaceList]
	ConfigMaps     = Resource[*corev1.ConfigMap, *corev1.ConfigMapList]
	Secrets        = Resource[*corev1.Secret, *corev1.SecretList]
	Events         = Resource[*corev1.Event, *corev1.EventList]
	Endpoints      = Resource[*corev1.Endpoints, *corev1.EndpointsList] //nolint:staticcheck // enable_endpoints asks for v1 Endpoints
	EndpointSlices = Resource[*discoveryv1.EndpointSlice, *discoveryv1.EndpointSliceList]
	Leases         = Resource[*coordinationv1.Lease, *coordinationv1.LeaseList]
	// ValidatingWebhookConfigurations is cluster-scoped.
	ValidatingWebhookConfigurations = Resource[*admissionregistrationv1.ValidatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfigurationList]
)

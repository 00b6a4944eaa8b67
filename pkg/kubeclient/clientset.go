package kubeclient

import (
	"errors"
	"fmt"
	"net/http"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Clientset is a client of the resources vigil uses. All its requests
// share one HTTP client and one rate limiter (the config's QPS and Burst).
type Clientset struct {
	scheme        *runtime.Scheme
	params        runtime.ParameterCodec
	core          rest.Interface // "" v1, under /api
	coordination  rest.Interface // coordination.k8s.io/v1
	discovery     rest.Interface // discovery.k8s.io/v1
	admission     rest.Interface // admissionregistration.k8s.io/v1
	discoveryDocs rest.Interface // unversioned: /apis/<group>/<version>
}

// New returns a Clientset for cfg (not modified). A config without a rate
// limiter gets a token bucket of its QPS and Burst, shared by every
// request of the Clientset.
func New(cfg *rest.Config) (*Clientset, error) {
	c := *cfg
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if c.RateLimiter == nil && c.QPS > 0 {
		if c.Burst <= 0 {
			return nil, errors.New("kubernetes client: burst must be positive when QPS is set")
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, c.Burst)
	}
	httpClient, err := rest.HTTPClientFor(&c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	s, err := NewScheme()
	if err != nil {
		return nil, err
	}
	cs := &Clientset{scheme: s, params: runtime.NewParameterCodec(s)}
	codecs := serializer.NewCodecFactory(s)
	for _, g := range []struct {
		client *rest.Interface
		path   string
		gv     schema.GroupVersion
	}{
		{&cs.core, "/api", corev1.SchemeGroupVersion},
		{&cs.coordination, "/apis", coordinationv1.SchemeGroupVersion},
		{&cs.discovery, "/apis", discoveryv1.SchemeGroupVersion},
		{&cs.admission, "/apis", admissionregistrationv1.SchemeGroupVersion},
	} {
		if *g.client, err = groupClient(c, httpClient, s, codecs, g.path, g.gv); err != nil {
			return nil, err
		}
	}
	if cs.discoveryDocs, err = discoveryClient(c, httpClient, codecs); err != nil {
		return nil, err
	}
	return cs, nil
}

// groupClient is the REST client of one group version of built-in types.
func groupClient(c rest.Config, h *http.Client, s *runtime.Scheme, codecs serializer.CodecFactory, path string, gv schema.GroupVersion) (rest.Interface, error) {
	c.APIPath, c.GroupVersion = path, &gv
	c.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(s, codecs).WithoutConversion()
	rc, err := rest.RESTClientForConfigAndClient(&c, h)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client of %s: %w", gv, err)
	}
	return rc, nil
}

// Scheme knows the types of the Clientset's groups (Event references).
func (c *Clientset) Scheme() *runtime.Scheme { return c.scheme }

// Services of namespace ("": all).
func (c *Clientset) Services(namespace string) Services {
	return gentype.NewClientWithList("services", c.core, c.params, namespace,
		func() *corev1.Service { return &corev1.Service{} },
		func() *corev1.ServiceList { return &corev1.ServiceList{} },
		gentype.PrefersProtobuf[*corev1.Service]())
}

// Nodes are cluster-scoped.
func (c *Clientset) Nodes() Nodes {
	return gentype.NewClientWithList("nodes", c.core, c.params, "",
		func() *corev1.Node { return &corev1.Node{} },
		func() *corev1.NodeList { return &corev1.NodeList{} },
		gentype.PrefersProtobuf[*corev1.Node]())
}

// Namespaces are cluster-scoped.
func (c *Clientset) Namespaces() Namespaces {
	return gentype.NewClientWithList("namespaces", c.core, c.params, "",
		func() *corev1.Namespace { return &corev1.Namespace{} },
		func() *corev1.NamespaceList { return &corev1.NamespaceList{} },
		gentype.PrefersProtobuf[*corev1.Namespace]())
}

// ConfigMaps of namespace ("": all).
func (c *Clientset) ConfigMaps(namespace string) ConfigMaps {
	return gentype.NewClientWithList("configmaps", c.core, c.params, namespace,
		func() *corev1.ConfigMap { return &corev1.ConfigMap{} },
		func() *corev1.ConfigMapList { return &corev1.ConfigMapList{} },
		gentype.PrefersProtobuf[*corev1.ConfigMap]())
}

// Secrets of namespace ("": all).
func (c *Clientset) Secrets(namespace string) Secrets {
	return gentype.NewClientWithList("secrets", c.core, c.params, namespace,
		func() *corev1.Secret { return &corev1.Secret{} },
		func() *corev1.SecretList { return &corev1.SecretList{} },
		gentype.PrefersProtobuf[*corev1.Secret]())
}

// Events of namespace ("": all). Unlike the other clients it sends JSON,
// as client-go's Event sink does.
func (c *Clientset) Events(namespace string) Events {
	return gentype.NewClientWithList("events", c.core, c.params, namespace,
		func() *corev1.Event { return &corev1.Event{} },
		func() *corev1.EventList { return &corev1.EventList{} })
}

// Endpoints (v1, deprecated) of namespace ("": all).
func (c *Clientset) Endpoints(namespace string) Endpoints {
	return gentype.NewClientWithList("endpoints", c.core, c.params, namespace,
		func() *corev1.Endpoints { return &corev1.Endpoints{} },         //nolint:staticcheck // enable_endpoints
		func() *corev1.EndpointsList { return &corev1.EndpointsList{} }, //nolint:staticcheck // enable_endpoints
		gentype.PrefersProtobuf[*corev1.Endpoints]())                    //nolint:staticcheck // enable_endpoints
}

// EndpointSlices of namespace ("": all).
func (c *Clientset) EndpointSlices(namespace string) EndpointSlices {
	return gentype.NewClientWithList("endpointslices", c.discovery, c.params, namespace,
		func() *discoveryv1.EndpointSlice { return &discoveryv1.EndpointSlice{} },
		func() *discoveryv1.EndpointSliceList { return &discoveryv1.EndpointSliceList{} },
		gentype.PrefersProtobuf[*discoveryv1.EndpointSlice]())
}

// Leases of namespace ("": all).
func (c *Clientset) Leases(namespace string) Leases {
	return gentype.NewClientWithList("leases", c.coordination, c.params, namespace,
		func() *coordinationv1.Lease { return &coordinationv1.Lease{} },
		func() *coordinationv1.LeaseList { return &coordinationv1.LeaseList{} },
		gentype.PrefersProtobuf[*coordinationv1.Lease]())
}

// ValidatingWebhookConfigurations are cluster-scoped.
func (c *Clientset) ValidatingWebhookConfigurations() ValidatingWebhookConfigurations {
	return gentype.NewClientWithList("validatingwebhookconfigurations", c.admission, c.params, "",
		func() *admissionregistrationv1.ValidatingWebhookConfiguration {
			return &admissionregistrationv1.ValidatingWebhookConfiguration{}
		},
		func() *admissionregistrationv1.ValidatingWebhookConfigurationList {
			return &admissionregistrationv1.ValidatingWebhookConfigurationList{}
		},
		gentype.PrefersProtobuf[*admissionregistrationv1.ValidatingWebhookConfiguration]())
}

package kubeclienttest

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/watchlist"

	"github.com/vigil-lb/vigil/pkg/kubeclient"
)

// Clientset has kubeclient.Clientset's methods, served by CS.
type Clientset struct{ CS kubernetes.Interface }

// Wrap serves kubeclient's methods from cs.
func Wrap(cs kubernetes.Interface) Clientset { return Clientset{CS: cs} }

// IsWatchListSemanticsUnSupported passes on what CS says (the fake
// clientset does not support WatchList): informers ask.
func (c Clientset) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(c.CS)
}

// Scheme is client-go's scheme of every API group.
func (c Clientset) Scheme() *runtime.Scheme { return scheme.Scheme }

func (c Clientset) Services(ns string) kubeclient.Services { return c.CS.CoreV1().Services(ns) }
func (c Clientset) Nodes() kubeclient.Nodes                { return c.CS.CoreV1().Nodes() }
func (c Clientset) Namespaces() kubeclient.Namespaces      { return c.CS.CoreV1().Namespaces() }
func (c Clientset) ConfigMaps(ns string) kubeclient.ConfigMaps {
	return c.CS.CoreV1().ConfigMaps(ns)
}
func (c Clientset) Secrets(ns string) kubeclient.Secrets { return c.CS.CoreV1().Secrets(ns) }
func (c Clientset) Events(ns string) kubeclient.Events   { return c.CS.CoreV1().Events(ns) }

//nolint:staticcheck // enable_endpoints asks for v1 Endpoints
func (c Clientset) Endpoints(ns string) kubeclient.Endpoints { return c.CS.CoreV1().Endpoints(ns) }
func (c Clientset) EndpointSlices(ns string) kubeclient.EndpointSlices {
	return c.CS.DiscoveryV1().EndpointSlices(ns)
}
func (c Clientset) Leases(ns string) kubeclient.Leases { return c.CS.CoordinationV1().Leases(ns) }
func (c Clientset) ValidatingWebhookConfigurations() kubeclient.ValidatingWebhookConfigurations {
	return c.CS.AdmissionregistrationV1().ValidatingWebhookConfigurations()
}

// ServerResourcesForGroupVersionWithContext asks CS's discovery.
func (c Clientset) ServerResourcesForGroupVersionWithContext(ctx context.Context, gv string) (*metav1.APIResourceList, error) {
	return c.CS.Discovery().ServerResourcesForGroupVersionWithContext(ctx, gv)
}

package kubeclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

// Discovery requests time out after this long unless the config says
// otherwise, and may burst this much without a rate limiter (client-go's
// discovery client's defaults).
const (
	discoveryTimeout = 32 * time.Second
	discoveryBurst   = 300
)

// discoveryClient is the unversioned REST client discovery documents are
// read with: decoded by the scheme, never encoded.
func discoveryClient(c rest.Config, h *http.Client, codecs serializer.CodecFactory) (rest.Interface, error) {
	c.APIPath, c.GroupVersion = "", nil
	if c.Timeout == 0 {
		c.Timeout = discoveryTimeout
	}
	if c.Burst == 0 {
		c.Burst = discoveryBurst
	}
	codec := runtime.NoopEncoder{Decoder: codecs.UniversalDecoder()}
	c.NegotiatedSerializer = serializer.NegotiatedSerializerWrapper(runtime.SerializerInfo{Serializer: codec})
	rc, err := rest.UnversionedRESTClientForConfigAndClient(&c, h)
	if err != nil {
		return nil, fmt.Errorf("kubernetes discovery client: %w", err)
	}
	return rc, nil
}

// ServerResourcesForGroupVersionWithContext reads the resources the API
// server serves in groupVersion ("v1" is the core group, under /api). A
// group version not served is an error IsNotFound tells; the core group
// never is.
func (c *Clientset) ServerResourcesForGroupVersionWithContext(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error) {
	if groupVersion == "" {
		return nil, errors.New("discovery: empty group version")
	}
	path := "/apis/" + groupVersion
	if groupVersion == "v1" {
		path = "/api/v1"
	}
	list := &metav1.APIResourceList{GroupVersion: groupVersion}
	err := c.discoveryDocs.Get().AbsPath(path).Do(ctx).Into(list)
	switch {
	case err == nil:
		return list, nil
	case groupVersion == "v1" && apierrors.IsNotFound(err):
		return list, nil
	default:
		return nil, err
	}
}

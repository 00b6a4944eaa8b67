package kubeclient

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
)

// ListWatcher lists and watches one resource: a typed client, or a dynamic
// client's resource.
type ListWatcher[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// InformerOptions shape an informer; the zero value is a plain one.
type InformerOptions struct {
	// Tweak edits every list and watch request (selectors).
	Tweak func(*metav1.ListOptions)
	// Transform edits every object before it is stored.
	Transform cache.TransformFunc
}

// NewInformer returns an informer, not started, of the objects c lists
// (example is one of them), without resync and indexed by namespace.
// client is what c came from: the informer does not use WatchList if
// client says it does not support it (client-go's fake clientset).
func NewInformer[L runtime.Object](c ListWatcher[L], client any, example runtime.Object, o InformerOptions) (cache.SharedIndexInformer, error) {
	inf := cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(listWatch(c, o.Tweak), client), example,
		cache.SharedIndexInformerOptions{Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}},
	)
	if o.Transform != nil {
		if err := inf.SetTransform(o.Transform); err != nil {
			return nil, fmt.Errorf("informer of %T: %w", example, err)
		}
	}
	return inf, nil
}

// NewDynamicInformer returns an informer, not started, of gvr's objects in
// namespace ("": all) as unstructured objects, without resync or indexes;
// tweak (may be nil) edits every list and watch request.
func NewDynamicInformer(c dynamic.Interface, gvr schema.GroupVersionResource, namespace string, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(listWatch(c.Resource(gvr).Namespace(namespace), tweak), c),
		&unstructured.Unstructured{}, cache.SharedIndexInformerOptions{Indexers: cache.Indexers{}, ObjectDescription: gvr.String()},
	)
}

// listWatch lists and watches through c, tweak (may be nil) applied.
func listWatch[L runtime.Object](c ListWatcher[L], tweak func(*metav1.ListOptions)) *cache.ListWatch {
	apply := func(opts metav1.ListOptions) metav1.ListOptions {
		if tweak != nil {
			tweak(&opts)
		}
		return opts
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return c.List(ctx, apply(opts))
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, apply(opts))
		},
	}
}

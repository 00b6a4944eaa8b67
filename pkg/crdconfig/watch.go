package crdconfig

import (
	"context"
	"fmt"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/pkg/kubeclient"
)

// watch is one running informer.
type watch struct {
	inf  cache.SharedIndexInformer
	stop context.CancelFunc
	done chan struct{}
}

func (w *watch) end() {
	w.stop()
	<-w.done
}

// discover follows the CRDs: an informer runs for each resource while it is
// served. It reports whether discovery answered.
func (s *Source) discover(ctx context.Context) bool {
	served, err := s.servedResources(ctx)
	if err != nil {
		// Run still publishes what the running informers have (nothing
		// if none), so the agent does not wait for discovery forever,
		// and looks again soon.
		s.logOnce("discovery", "cannot tell whether the vigil.io BGP CRDs are installed; will look again", "err", err)
		return false
	}
	s.clearLog("discovery")
	var names []string
	for _, gvr := range resources {
		w := s.watches[gvr]
		switch {
		case served[gvr.Resource] && w == nil:
			if w = s.start(ctx, gvr); w != nil {
				s.watches[gvr] = w
			}
		case !served[gvr.Resource] && w != nil:
			w.end()
			delete(s.watches, gvr)
		}
		if served[gvr.Resource] {
			names = append(names, gvr.Resource)
		}
	}
	s.logServed(strings.Join(names, ", "))
	return true
}

// logServed logs what is served when it changes.
func (s *Source) logServed(names string) {
	if names == s.served {
		return
	}
	s.served = names
	if names == "" {
		s.o.Log.Info("vigil.io BGP CRDs are not installed: no BGPPeers or advertisements from objects; they are picked up once installed (vigil manifest crds)",
			"groupVersion", GroupVersion.String(), "every", s.o.Interval)
		return
	}
	s.o.Log.Info("vigil.io BGP CRDs are installed: serving their objects", "resources", names)
}

// servedResources asks discovery which of the four resources are served.
func (s *Source) servedResources(ctx context.Context) (map[string]bool, error) {
	list, err := s.disco.ServerResourcesForGroupVersionWithContext(ctx, GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discovery of %s: %w", GroupVersion, err)
	}
	served := map[string]bool{}
	for _, r := range list.APIResources {
		served[r.Name] = true
	}
	return served, nil
}

// start runs an informer for gvr; nil if it cannot.
func (s *Source) start(ctx context.Context, gvr schema.GroupVersionResource) *watch {
	inf := kubeclient.NewDynamicInformer(s.dyn, gvr, "", nil)
	kick := func(any) { s.enqueue() }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick, UpdateFunc: func(_, o any) { kick(o) }, DeleteFunc: kick,
	}); err != nil {
		s.o.Log.Warn("cannot watch", "resource", gvr.String(), "err", err)
		return nil
	}
	// Watch errors (RBAC, the CRD deleted under it) go to this log, once
	// per distinct message, instead of klog every few seconds.
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		s.logOnce("watch "+gvr.Resource, "watch failed", "resource", gvr.String(), "err", err)
	}); err != nil {
		s.o.Log.Warn("cannot watch", "resource", gvr.String(), "err", err)
		return nil
	}
	ictx, stop := context.WithCancel(ctx)
	w := &watch{inf: inf, stop: stop, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ictx) })
	// Run rebuilds once the objects are listed.
	wg.Go(func() {
		if cache.WaitForCacheSync(ictx.Done(), inf.HasSynced) {
			s.enqueue()
		}
	})
	go func() { wg.Wait(); close(w.done) }()
	return w
}

func (s *Source) stopAll() {
	for gvr, w := range s.watches {
		w.end()
		delete(s.watches, gvr)
	}
}

// lists returns the objects of every resource, sorted by name; false while
// an informer has not synced.
func (s *Source) lists() (map[schema.GroupVersionResource][]*unstructured.Unstructured, bool) {
	out := map[schema.GroupVersionResource][]*unstructured.Unstructured{}
	for gvr, w := range s.watches {
		if !w.inf.HasSynced() {
			return nil, false
		}
		var objs []*unstructured.Unstructured
		for _, o := range w.inf.GetStore().List() {
			if u, ok := o.(*unstructured.Unstructured); ok {
				objs = append(objs, u)
			}
		}
		out[gvr] = sortedByName(objs)
	}
	return out, true
}

package metallb

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/pkg/kubeclient"
)

// configMaps is the legacy ConfigMap's resource (always served).
var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// syncWait bounds how long a watch that cannot list (RBAC) holds up the
// configuration: after it, the watch counts as empty.
const syncWait = 10 * time.Second

// watch is one running informer.
type watch struct {
	inf     cache.SharedIndexInformer
	started time.Time
	stop    context.CancelFunc
	done    chan struct{}
}

func (w *watch) end() {
	w.stop()
	<-w.done
}

// discover follows MetalLB's CRDs: an informer runs for each resource
// while it is served, and one for the legacy ConfigMap always. It reports
// whether discovery answered.
func (s *Source) discover(ctx context.Context) bool {
	if s.watches[configMaps] == nil {
		s.watches[configMaps] = s.start(ctx, configMaps, ConfigMapName)
	}
	served, err := s.servedResources(ctx)
	if err != nil {
		s.logOnce("discovery", "cannot tell whether MetalLB's CRDs are installed; will look again", "err", err)
		if s.served == notLooked {
			s.served = "" // serve what there is meanwhile
		}
		return false
	}
	s.clearLog("discovery")
	var names []string
	for _, gvr := range Resources {
		w := s.watches[gvr]
		switch {
		case served[gvr] && w == nil:
			s.watches[gvr] = s.start(ctx, gvr, "")
		case !served[gvr] && w != nil:
			w.end()
			delete(s.watches, gvr)
		}
		if served[gvr] {
			names = append(names, gvr.Resource)
		}
	}
	s.logServed(strings.Join(names, ", "))
	return true
}

// logServed logs what is served when it changes: once while MetalLB's
// CRDs are not installed.
func (s *Source) logServed(names string) {
	if names == s.served {
		return
	}
	s.served = names
	if names == "" {
		s.o.Log.Info("MetalLB's CRDs (metallb.io) are not installed: no IPAddressPools or advertisements from them; they are picked up once installed (vigil manifest metallb-crds)",
			"every", s.o.Interval, "legacyConfigMap", s.o.Namespace+"/"+ConfigMapName)
		return
	}
	s.o.Log.Info("MetalLB's CRDs are installed: serving their objects", "resources", names)
}

// servedResources asks discovery which of MetalLB's resources are served.
func (s *Source) servedResources(ctx context.Context) (map[schema.GroupVersionResource]bool, error) {
	served := map[schema.GroupVersionResource]bool{}
	for _, gv := range []schema.GroupVersion{V1beta1, V1beta2} {
		list, err := s.disco.ServerResourcesForGroupVersionWithContext(ctx, gv.String())
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("discovery of %s: %w", gv, err)
		}
		for _, r := range list.APIResources {
			served[gv.WithResource(r.Name)] = true
		}
	}
	return served, nil
}

// start runs a namespaced informer for gvr (one object if name is set).
func (s *Source) start(ctx context.Context, gvr schema.GroupVersionResource, name string) *watch {
	tweak := func(o *metav1.ListOptions) {
		if name != "" {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}
	}
	inf := kubeclient.NewDynamicInformer(s.dyn, gvr, s.o.Namespace, tweak)
	kick := func(any) { s.enqueue() }
	_, herr := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: kick, UpdateFunc: func(_, o any) { kick(o) }, DeleteFunc: kick})
	werr := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		s.logOnce("watch "+gvr.Resource, "watch failed", "resource", gvr.String(), "err", err)
	})
	if herr != nil || werr != nil {
		s.o.Log.Warn("cannot watch", "resource", gvr.String(), "err", fmt.Errorf("%w %w", herr, werr))
	}
	ictx, stop := context.WithCancel(ctx)
	w := &watch{inf: inf, started: s.o.Clock.Now(), stop: stop, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ictx) })
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

// lists returns the objects of every served resource sorted by name, and
// the legacy ConfigMap (nil: none); false while an informer is syncing
// (for at most syncWait).
func (s *Source) lists() (Objects, *unstructured.Unstructured, bool) {
	out := Objects{}
	var cm *unstructured.Unstructured
	for gvr, w := range s.watches {
		if !w.inf.HasSynced() {
			if s.o.Clock.Now().Sub(w.started) < syncWait {
				return nil, nil, false
			}
			continue
		}
		objs := sortedObjects(w.inf.GetStore().List())
		if gvr == configMaps {
			if len(objs) > 0 {
				cm = objs[0]
			}
			continue
		}
		out[gvr] = objs
	}
	return out, cm, true
}

func sortedObjects(list []any) []*unstructured.Unstructured {
	var objs []*unstructured.Unstructured
	for _, o := range list {
		if u, ok := o.(*unstructured.Unstructured); ok {
			objs = append(objs, u)
		}
	}
	slices.SortFunc(objs, func(a, b *unstructured.Unstructured) int { return strings.Compare(a.GetName(), b.GetName()) })
	return objs
}

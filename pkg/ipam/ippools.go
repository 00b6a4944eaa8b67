package ipam

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/pkg/kubeclient"
)

// resourceDiscovery is what the IPPool source needs of discovery (any
// authenticated client may read it: no RBAC rule is needed).
type resourceDiscovery interface {
	ServerResourcesForGroupVersionWithContext(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error)
}

// crdState is what discovery last said about the IPPool CRD.
type crdState int

const (
	crdUnknown crdState = iota // not looked yet, or discovery failed
	crdAbsent                  // not installed
	crdServed                  // installed; IPPools are listed once synced
)

// ipPoolSource serves IPPools while their CRD is installed. The CRD is
// optional (kube-vip-cloud-provider's ConfigMap alone is enough): the source
// looks at discovery every interval, runs an informer only while the CRD is
// served, and stops it when the CRD goes, so a missing CRD is neither a
// reflector retrying forever nor a cache that never syncs.
type ipPoolSource struct {
	disco    resourceDiscovery
	dyn      dynamic.Interface
	interval time.Duration
	clock    clock.Clock
	log      *slog.Logger
	changed  func() // the set of IPPools (or their availability) changed

	mu        sync.Mutex
	checked   bool      // discovery was asked at least once
	firstLook time.Time // when it was first asked
	failed    bool      // the last look at discovery failed
	started   time.Time // when the informer started
	state     crdState
	inf       cache.SharedIndexInformer // running while served
	lister    cache.GenericLister       // set once inf has synced
	published atomic.Bool               // lister != nil, for the handlers
	stop      context.CancelFunc
	done      chan struct{}

	logMu    sync.Mutex
	lastErr  string // last discovery error logged
	watchErr string // last watch error logged
}

func newIPPoolSource(disco resourceDiscovery, dyn dynamic.Interface, interval time.Duration, clk clock.Clock, log *slog.Logger, changed func()) *ipPoolSource {
	return &ipPoolSource{disco: disco, dyn: dyn, interval: interval, clock: clk, log: log, changed: changed}
}

// run looks at discovery until ctx ends, then stops the informer.
func (s *ipPoolSource) run(ctx context.Context) {
	t := s.clock.NewTimer()
	defer t.Stop()
	defer s.stopInformer()
	for {
		s.check(ctx)
		t.Reset(s.clock.Now().Add(s.nextCheck()))
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// discoveryRetry is how soon discovery is asked again after it failed (the
// API server away), instead of a whole interval: an allocator started
// during an API server outage otherwise went on without the IPPools up to
// 30 s after the API server was back.
const discoveryRetry = time.Second

// nextCheck is soon while an informer is syncing or discovery failed, else
// the interval.
func (s *ipPoolSource) nextCheck() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.inf != nil && s.lister == nil:
		return min(s.interval, 200*time.Millisecond)
	case s.failed:
		return min(s.interval, discoveryRetry)
	}
	return s.interval
}

// check follows the CRD: start the informer when it appears, publish the
// lister once synced, stop the informer when the CRD goes.
func (s *ipPoolSource) check(ctx context.Context) {
	served, err := s.served(ctx)
	s.mu.Lock()
	if !s.checked {
		s.firstLook = s.clock.Now()
	}
	s.checked, s.failed = true, err != nil
	s.mu.Unlock()
	if err != nil {
		s.logOnce(&s.lastErr, "cannot tell whether the IPPool CRD is installed; will look again", err)
		return
	}
	s.clearLog(&s.lastErr)
	if stop := s.follow(ctx, served); stop != nil {
		stop()
	}
}

// follow updates the state; it returns the stop of an informer to end
// (outside the lock: its handlers take it).
func (s *ipPoolSource) follow(ctx context.Context, served bool) (stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case served && s.inf == nil:
		s.log.Info("IPPool CRD is installed: serving IPPools", "resource", IPPoolResource.String())
		s.state = crdServed
		s.startInformer(ctx)
	case served && s.lister == nil && s.inf.HasSynced():
		s.lister = cache.NewGenericLister(s.inf.GetIndexer(), IPPoolResource.GroupResource())
		s.published.Store(true)
		s.changed()
	case !served && s.state != crdAbsent:
		s.log.Info("IPPool CRD is not installed: serving the other pool sources; it is picked up once installed",
			"resource", IPPoolResource.String(), "every", s.interval)
		s.state = crdAbsent
		stop = s.detach()
		s.changed()
	}
	return stop
}

// served asks discovery whether the IPPool resource is served.
func (s *ipPoolSource) served(ctx context.Context) (bool, error) {
	list, err := s.disco.ServerResourcesForGroupVersionWithContext(ctx, IPPoolResource.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovery of %s: %w", IPPoolResource.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == IPPoolResource.Resource {
			return true, nil
		}
	}
	return false, nil
}

func (s *ipPoolSource) startInformer(ctx context.Context) {
	inf := kubeclient.NewDynamicInformer(s.dyn, IPPoolResource, "", nil)
	onChange := func(any) {
		if s.published.Load() {
			s.changed()
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onChange, UpdateFunc: func(_, o any) { onChange(o) }, DeleteFunc: onChange,
	}); err != nil {
		s.log.Warn("cannot watch IPPools", "err", err)
		return
	}
	// Watch errors (RBAC, the CRD deleted under it) go to this log, once
	// per distinct message, instead of klog every few seconds.
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		s.logOnce(&s.watchErr, "IPPool watch failed", err)
	}); err != nil {
		s.log.Warn("cannot watch IPPools", "err", err)
		return
	}
	ictx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); inf.RunWithContext(ictx) }()
	s.inf, s.stop, s.done, s.started = inf, stop, done, s.clock.Now()
}

func (s *ipPoolSource) stopInformer() {
	s.mu.Lock()
	stop := s.detach()
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// detach forgets the informer and returns what stops it (nil: none).
func (s *ipPoolSource) detach() func() {
	if s.inf == nil {
		return nil
	}
	cancel, done := s.stop, s.done
	s.inf, s.lister, s.stop, s.done = nil, nil, nil, nil
	s.published.Store(false)
	s.clearLog(&s.watchErr)
	return func() { cancel(); <-done }
}

func (s *ipPoolSource) logOnce(last *string, msg string, err error) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if *last == err.Error() {
		return
	}
	*last = err.Error()
	s.log.Warn(msg, "err", err)
}

func (s *ipPoolSource) clearLog(last *string) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	*last = ""
}

// settled reports whether the source has something to say: discovery
// found no CRD, or the IPPools are listed, or discovery kept failing or the
// IPPools could not be listed for syncWait (then the other sources are
// served meanwhile). The allocator waits for it before it leads, so it
// does not start without the IPPools and tell Services there is no pool
// (an allocator started during an API server outage did, until discovery
// answered).
func (s *ipPoolSource) settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	switch {
	case !s.checked:
		return false
	case s.failed && s.state == crdUnknown:
		return now.After(s.firstLook.Add(syncWait))
	case s.state != crdServed || s.lister != nil:
		return true
	}
	return s.inf == nil || now.After(s.started.Add(syncWait))
}

// syncWait bounds how long the allocator waits for the IPPools before it
// leads without them.
const syncWait = 10 * time.Second

// list returns the IPPools and what is known of the CRD. While the CRD is
// absent, or its informer has not synced, there are none.
func (s *ipPoolSource) list() ([]runtime.Object, crdState, error) {
	s.mu.Lock()
	lister, state := s.lister, s.state
	s.mu.Unlock()
	if lister == nil {
		return nil, state, nil
	}
	objs, err := lister.List(labels.Everything())
	if err != nil {
		return nil, state, fmt.Errorf("list IPPools: %w", err)
	}
	return objs, state, nil
}

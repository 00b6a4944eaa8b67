package kubeclient

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
)

// PromptCache is an informer whose reflector retries a failed list or watch
// every Retry, where a shared informer backs off exponentially up to 30 s
// (60 with jitter) and keeps that backoff until two minutes pass without a
// failure: after a few API server restarts in a row, a shared informer's
// cache came back 24 s after the API server did. Use it where a cache must
// come back as soon as the API server does (the elector leads only once its
// Lease cache shows its own write); its retries cost one request per Retry
// while the API server is away.
//
// It has one event handler, given at construction, called from the
// reflector's goroutine after the cache was updated, as a shared informer
// calls its handlers after its indexer: it must only record and enqueue.
type PromptCache struct {
	indexer   cache.Indexer
	reflector *cache.Reflector
	store     *promptStore
}

// PromptOptions shape a PromptCache.
type PromptOptions struct {
	InformerOptions
	Retry   time.Duration              // between a failed list or watch and the next try
	Handler cache.ResourceEventHandler // nil: none
}

// NewPromptCache returns a PromptCache, not started, of the objects c lists
// (example is one of them), indexed by namespace; client is what c came
// from (see NewInformer).
func NewPromptCache[L runtime.Object](c ListWatcher[L], client any, example runtime.Object, o PromptOptions) (*PromptCache, error) {
	if o.Retry <= 0 {
		return nil, fmt.Errorf("prompt cache of %T: retry %v must be positive", example, o.Retry)
	}
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	store := &promptStore{indexer: indexer, handler: o.Handler, transform: o.Transform}
	if store.handler == nil {
		store.handler = cache.ResourceEventHandlerFuncs{}
	}
	r := cache.NewReflectorWithOptions(cache.ToListWatcherWithWatchListSemantics(listWatch(c, o.Tweak), client), example, store,
		cache.ReflectorOptions{
			TypeDescription: fmt.Sprintf("%T", example),
			// A constant delay (Factor 0), jittered by up to a fifth so
			// that agents restarted together do not retry in step.
			Backoff: &wait.Backoff{Duration: o.Retry, Jitter: 0.2},
		})
	return &PromptCache{indexer: indexer, reflector: r, store: store}, nil
}

// RunWithContext fills the cache and keeps it up to date until ctx ends.
func (p *PromptCache) RunWithContext(ctx context.Context) { p.reflector.RunWithContext(ctx) }

// HasSynced reports whether the first list is in the cache.
func (p *PromptCache) HasSynced() bool { return p.store.synced.Load() }

// GetIndexer returns the cache, for listers.
func (p *PromptCache) GetIndexer() cache.Indexer { return p.indexer }

// promptStore is the reflector's store: it keeps the indexer and calls the
// handler after each change.
type promptStore struct {
	indexer   cache.Indexer
	handler   cache.ResourceEventHandler
	transform cache.TransformFunc
	synced    atomic.Bool
}

func (s *promptStore) Add(obj any) error    { return s.upsert(obj) }
func (s *promptStore) Update(obj any) error { return s.upsert(obj) }
func (s *promptStore) Resync() error        { return nil }

// change is one change to the cache, to report to the handler.
type change struct {
	old, obj any // old nil: added; obj nil: deleted (old, as last known)
	initial  bool
}

func (s *promptStore) report(c change) {
	switch {
	case c.obj == nil:
		s.handler.OnDelete(c.old)
	case c.old == nil:
		s.handler.OnAdd(c.obj, c.initial)
	default:
		s.handler.OnUpdate(c.old, c.obj)
	}
}

// upsert stores obj, transformed, and reports it as added or updated.
func (s *promptStore) upsert(obj any) error {
	c, err := s.store(obj)
	if err != nil {
		return err
	}
	s.report(c)
	return nil
}

// store puts obj, transformed, in the cache and returns the change.
func (s *promptStore) store(obj any) (change, error) {
	obj, err := s.transformed(obj)
	if err != nil {
		return change{}, err
	}
	old, exists, err := s.indexer.Get(obj)
	if err != nil {
		return change{}, fmt.Errorf("prompt cache: %w", err)
	}
	if err := s.indexer.Update(obj); err != nil {
		return change{}, fmt.Errorf("prompt cache: %w", err)
	}
	if !exists {
		old = nil
	}
	return change{old: old, obj: obj}, nil
}

func (s *promptStore) Delete(obj any) error {
	if err := s.indexer.Delete(obj); err != nil {
		return fmt.Errorf("prompt cache: %w", err)
	}
	s.handler.OnDelete(obj)
	return nil
}

// Replace makes the cache hold exactly list (a relist): what it held and
// the list lacks is reported deleted, with its last known state. The whole
// list is in the cache (and the first one marks it synced) before the
// handler hears of it, as with a shared informer, whose handlers may lag
// its cache.
func (s *promptStore) Replace(list []any, _ string) error {
	changes, err := s.replace(list)
	if err != nil {
		return err
	}
	initial := !s.synced.Swap(true)
	for _, c := range changes {
		c.initial = initial
		s.report(c)
	}
	return nil
}

// replace stores list in place of the cache's contents and returns the
// changes.
func (s *promptStore) replace(list []any) ([]change, error) {
	changes := make([]change, 0, len(list))
	keep := make(map[string]bool, len(list))
	for _, obj := range list {
		c, err := s.store(obj)
		if err != nil {
			return nil, err
		}
		key, err := cache.MetaNamespaceKeyFunc(c.obj)
		if err != nil {
			return nil, fmt.Errorf("prompt cache: %w", err)
		}
		keep[key] = true
		changes = append(changes, c)
	}
	for _, key := range s.indexer.ListKeys() {
		if keep[key] {
			continue
		}
		old, exists, err := s.indexer.GetByKey(key)
		if err != nil {
			return nil, fmt.Errorf("prompt cache: %w", err)
		}
		if !exists {
			continue
		}
		if err := s.indexer.Delete(old); err != nil {
			return nil, fmt.Errorf("prompt cache: %w", err)
		}
		changes = append(changes, change{old: cache.DeletedFinalStateUnknown{Key: key, Obj: old}})
	}
	return changes, nil
}

func (s *promptStore) transformed(obj any) (any, error) {
	if s.transform == nil {
		return obj, nil
	}
	out, err := s.transform(obj)
	if err != nil {
		return nil, fmt.Errorf("prompt cache: transform: %w", err)
	}
	return out, nil
}

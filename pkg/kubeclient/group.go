package kubeclient

import (
	"sync"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
)

// Informers runs informers together, as client-go's informer factory did:
// Start runs those not running yet, Shutdown waits for them to stop.
type Informers struct {
	mu           sync.Mutex
	all          []cache.SharedIndexInformer
	started      int // all[:started] run
	shuttingDown bool
	wg           sync.WaitGroup
}

// Add adds inf, to be run by the next Start; it returns inf.
func (g *Informers) Add(inf cache.SharedIndexInformer) cache.SharedIndexInformer {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.all = append(g.all, inf)
	return inf
}

// Start runs every informer not yet started until stop is closed; after
// Shutdown it does nothing.
func (g *Informers) Start(stop <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shuttingDown {
		return
	}
	ctx := wait.ContextForChannel(stop)
	for _, inf := range g.all[g.started:] {
		g.wg.Go(func() { inf.RunWithContext(ctx) })
	}
	g.started = len(g.all)
}

// Shutdown waits for the started informers to stop (their stop channels
// must be closed) and keeps Start from starting more.
func (g *Informers) Shutdown() {
	g.mu.Lock()
	g.shuttingDown = true
	g.mu.Unlock()
	g.wg.Wait()
}

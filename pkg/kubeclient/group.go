package kubeclient

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Informers runs informers together, as client-go's informer factory did:
// Start runs those not running yet, Shutdown waits for them to stop.
type Informers struct {
	mu           sync.Mutex
	all          []Runner
	started      int // all[:started] run
	shuttingDown bool
	wg           sync.WaitGroup
}

// Runner is an informer, or a PromptCache.
type Runner interface {
	RunWithContext(ctx context.Context)
}

// Add adds inf, to be run by the next Start.
func (g *Informers) Add(inf Runner) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.all = append(g.all, inf)
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

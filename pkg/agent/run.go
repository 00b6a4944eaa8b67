package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
)

// Run starts the informers and the workers. When ctx ends it withdraws
// every VIP and only then resigns every lease, so no other node takes over
// while this one still answers for an address.
func (a *Agent) Run(ctx context.Context) error {
	defer a.queue.ShutDown()
	defer a.statusQueue.ShutDown()
	a.infs.Start(ctx.Done())
	defer a.infs.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		return a.shutdown()
	}
	a.removeForeign()
	a.log.Info("agent started", "perServiceElection", a.cfg.PerService, "namespace", a.cfg.Namespace, "l2", !a.cfg.L2Off, "bgp", a.routing(a.router != nil))
	if a.router != nil {
		// One node at a time writes the status of Services every eligible
		// node advertises, and the Events about BGP configuration objects.
		a.elector.Campaign(a.cfg.StatusLease)
	}
	if a.cfg.Presence.Name != "" {
		a.elector.Campaign(a.cfg.Presence)
	}
	loops := []func(context.Context) bool{a.processNext, a.processStatus}
	if a.labels != nil {
		defer a.labels.queue.ShutDown()
		a.labels.queue.Add("node") // labels a previous life left
		loops = append(loops, a.processLabels)
	}
	var wg sync.WaitGroup
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loop(ctx) {
			}
		}()
	}
	a.tick(ctx)
	a.queue.ShutDown()
	a.statusQueue.ShutDown()
	if a.labels != nil {
		a.labels.queue.ShutDown()
	}
	wg.Wait()
	return a.shutdown()
}

// tick runs the periodic work until ctx ends: extending the kernel
// lifetime of every address this node announces, a level-triggered look at
// every Service now and then, and (opt-in) one rebalancing handover at a
// time.
func (a *Agent) tick(ctx context.Context) {
	refresh := a.clock.NewTimer()
	defer refresh.Stop()
	resync := a.clock.NewTimer()
	defer resync.Stop()
	rebalance := a.clock.NewTimer()
	defer rebalance.Stop()
	refresh.Reset(a.clock.Now().Add(refreshPeriod))
	resync.Reset(a.clock.Now().Add(a.resyncPeriod))
	if a.rebalancing() {
		rebalance.Reset(a.clock.Now().Add(a.cfg.Rebalance))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C():
			a.refreshAddrs()
			refresh.Reset(a.clock.Now().Add(refreshPeriod))
		case <-resync.C():
			a.enqueueAll()
			a.checkRouter()
			resync.Reset(a.clock.Now().Add(a.resyncPeriod))
		case <-rebalance.C():
			a.rebalanceOne()
			rebalance.Reset(a.clock.Now().Add(a.cfg.Rebalance))
		}
	}
}

// checkRouter has the BGP dataplane repair what someone else changed.
func (a *Agent) checkRouter() {
	if a.router == nil {
		return
	}
	if err := a.router.Check(); err != nil {
		a.log.Warn("BGP dataplane check failed", "node", a.cfg.NodeName, "err", err)
	}
}

func (a *Agent) rebalancing() bool { return a.cfg.Rebalance > 0 && a.succ != nil }

// refreshPeriod is how often announced addresses get their kernel lifetime
// extended from the elector's latest term.
const refreshPeriod = 250 * time.Millisecond

// shutdown: forwards of Services no other node can take are deleted while
// their VIPs are still up; then every DHCP lease is released and every VIP
// withdrawn; only then are the Leases released.
func (a *Agent) shutdown() error {
	var errs []error
	a.shutdownOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), maxUPnPDrain)
		defer cancel()
		errs = append(errs, a.drainLastForwards(ctx))
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, key := range a.dp.DHCPKeys() {
			errs = append(errs, a.dp.StopDHCP(key))
		}
		for _, ip := range append(a.dp.Bound(), a.dp.Preserved()...) {
			errs = append(errs, a.dp.Down(ip))
		}
		errs = append(errs, a.withdrawRoutes(), a.applyFirewall())
		rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer rcancel()
		errs = append(errs, a.elector.ResignAll(rctx))
		errs = append(errs, a.unlabel())
		a.log.Info("agent stopped: VIPs withdrawn, leases released")
	})
	return errors.Join(errs...)
}

// withdrawRoutes withdraws every route this node advertises (shutdown).
func (a *Agent) withdrawRoutes() error {
	if a.router == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var errs []error
	for _, ip := range a.router.Advertised() {
		errs = append(errs, a.router.Withdraw(ctx, ip))
	}
	return errors.Join(errs...)
}

func (a *Agent) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	start := a.clock.Now()
	err := a.sync(ctx, key)
	if a.metrics != nil {
		a.metrics.Reconciled(a.clock.Now().Sub(start), err)
		a.metrics.Announced(len(a.dp.Bound()))
	}
	if err != nil {
		a.log.Warn("sync failed, will retry", "service", key, "err", err)
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	return true
}

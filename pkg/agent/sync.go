package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/plan"
	"github.com/vigil-lb/vigil/pkg/vip"
)

// sync is the level-triggered reconcile of one Service: gather the facts
// from the listers and the elector, plan, then apply the plan through the
// announcer, DHCP and UPnP, and hand the status to the status worker.
func (a *Agent) sync(ctx context.Context, key string) error {
	svc, err := a.model(key)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	log := a.log.With("service", key)
	st := a.state(key)
	prevLease := st.lease
	a.byLease.update(st, func() { st.lease = a.leaseKey(key, svc) })
	v := plan.Evaluate(svc, a.others(svc), a.eligibility(svc))
	l2, bgp := a.modes(svc)
	candidate := !st.yield && plan.Candidate(v, a.addrViews(svc, key)) && plan.CanCarry(l2, bgp, a.sessions())
	leading := candidate && a.elector.Leading(st.lease)
	forward := a.wantsForwards(svc, v, leading)
	a.stopForwards(st, key, forward)

	var touched []netip.Addr
	a.byAddr.update(st, func() { touched = st.claim(v.Active, svc) })
	st.l2, st.pool, st.iface = l2, svc.PoolName(), svc.InterfaceName()
	if svc != nil {
		st.ports, st.vlan = svc.Ports, svc.VLAN
	}
	a.byLease.update(st, func() { st.candidate = candidate && a.electing(l2, bgp) })
	if st.candidate {
		a.elector.Campaign(st.lease)
	}
	st.routed = plan.Routed(v, a.routing(bgp), leading)
	errs := []error{a.applyAddrs(log, touched), a.applyRoutes(ctx, log, touched)}
	in := a.intent(svc, v, st, leading)
	errs = append(errs, a.syncDHCP(log, svc, st, v, leading, &in), a.applyFirewall())
	a.syncForwards(svc, st, forward, &in)
	errs = append(errs, a.resignUnused(ctx, key, st, prevLease))
	if st.yield {
		st.yield = false // handed over (rebalance.go): a candidate again, ranked below the new holder
		a.queue.Add(key)
	}
	if svc == nil {
		errs = append(errs, a.cleanUpLease(ctx, key))
	}
	a.transition(log, svc, st, in)
	a.label(key, in)
	a.publish(key, svc, in)
	if svc == nil && st.idle() {
		delete(a.states, key)
		a.models.Forget(key)
	}
	return errors.Join(errs...)
}

// model reads the parsed Service from the lister (nil: deleted).
func (a *Agent) model(key string) (*kube.Service, error) {
	ns, name, _ := strings.Cut(key, "/")
	svc, err := a.services.Services(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read service %s: %w", key, err)
	case a.cfg.Namespace != "" && svc.Namespace != a.cfg.Namespace:
		return nil, nil
	}
	return a.models.Get(svc), nil
}

// users returns the Services asking for ip.
func (a *Agent) users(ip netip.Addr) []*corev1.Service {
	out := byIndex[*corev1.Service](a, a.svcIndex, indexByVIP, ip.String())
	for _, svc := range a.namedUsers(ip) {
		if !slices.Contains(out, svc) {
			out = append(out, svc)
		}
	}
	return out
}

// byIndex lists the objects of type T an index holds under key.
func byIndex[T any](a *Agent, idx cache.Indexer, name, key string) []T {
	objs, err := idx.ByIndex(name, key)
	if err != nil {
		a.log.Error("informer index", "index", name, "key", key, "err", err)
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// others returns the other handled Services asking for any of svc's
// addresses.
func (a *Agent) others(svc *kube.Service) []*kube.Service {
	if svc == nil {
		return nil
	}
	var out []*kube.Service
	for _, ip := range svc.Addrs {
		for _, o := range a.users(ip) {
			if m := a.models.Get(o); m.Key != svc.Key && m.Handled && !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}

// eligibility says where the Service may be announced: its ready endpoints
// under its traffic policy, on nodes not excluded from load balancing.
func (a *Agent) eligibility(svc *kube.Service) plan.Eligibility {
	if svc == nil || !svc.Handled {
		return plan.Eligibility{}
	}
	ready := a.readyOf(svc.Key)
	if svc.WithoutEndpoints {
		ready.Any = true // Cluster policy only (kube.Parse)
	}
	here := a.eligibleOn(svc, ready, a.cfg.NodeName)
	if !svc.Local {
		n, visible := a.eligibleNodeCount()
		return plan.Eligibility{Here: here, Any: ready.Any && (!visible || n > 0)}
	}
	return plan.Eligibility{Here: here, Any: a.readyEligible(ready) > 0}
}

// nodeEligible reports whether a node may announce: its Node has neither
// the exclusion label nor NetworkUnavailable (unless told to ignore both).
// A node whose Node object this agent cannot see is not excluded.
func (a *Agent) nodeEligible(name string) bool {
	if a.cfg.IgnoreNodeExclusion {
		return true
	}
	n, err := a.nodes.Get(name)
	if err != nil {
		return true
	}
	return kube.NodeExcluded(n) == ""
}

// readyEligible counts the eligible nodes among those with a ready
// endpoint.
func (a *Agent) readyEligible(ready kube.Ready) int {
	return len(a.readyEligibleNodes(ready))
}

// readyEligibleNodes names the eligible nodes among those with a ready
// endpoint.
func (a *Agent) readyEligibleNodes(ready kube.Ready) []string {
	var out []string
	for name := range ready.Nodes {
		if a.nodeEligible(name) {
			out = append(out, name)
		}
	}
	return out
}

// eligibleNodeCount counts the Nodes not excluded from load balancing;
// visible is false when this agent sees no Node objects at all.
func (a *Agent) eligibleNodeCount() (n int, visible bool) {
	nodes, err := a.nodes.List(labels.Everything())
	if err != nil || len(nodes) == 0 {
		return 0, false
	}
	for _, node := range nodes {
		if a.cfg.IgnoreNodeExclusion || kube.NodeExcluded(node) == "" {
			n++
		}
	}
	return n, true
}

// EligibleNodes names the Nodes not excluded from load balancing (nil when
// this agent sees no Node objects): the candidates the elector ranks.
func (a *Agent) EligibleNodes() []string {
	nodes, err := a.nodes.List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []string
	for _, node := range nodes {
		if a.cfg.IgnoreNodeExclusion || kube.NodeExcluded(node) == "" {
			out = append(out, node.Name)
		}
	}
	return out
}

// eligibleNodes counts the nodes that may advertise a Service: with Local,
// the eligible nodes with a ready endpoint; otherwise every eligible Node
// (at least this one, when no Node objects are visible).
func (a *Agent) eligibleNodes(svc *kube.Service) int {
	if svc.Local {
		return a.readyEligible(a.readyOf(svc.Key))
	}
	if n, visible := a.eligibleNodeCount(); visible {
		return n
	}
	return 1
}

// readyOf reads a Service's ready endpoints from its EndpointSlices, or its
// v1 Endpoints with Config.Endpoints.
func (a *Agent) readyOf(key string) kube.Ready {
	if a.cfg.Endpoints {
		return kube.ReadyFromEndpoints(byIndex[*corev1.Endpoints](a, a.sliceIndex, indexByService, key)) //nolint:staticcheck // enable_endpoints
	}
	return kube.ReadyEndpoints(byIndex[*discoveryv1.EndpointSlice](a, a.sliceIndex, indexByService, key))
}

// addrViews is what this node knows about each address of svc.
func (a *Agent) addrViews(svc *kube.Service, self string) []plan.AddrView {
	if svc == nil {
		return nil
	}
	out := make([]plan.AddrView, 0, len(svc.Addrs))
	for _, ip := range svc.Addrs {
		out = append(out, plan.AddrView{Addr: ip, Up: a.dp.IsBound(ip), OtherHolds: a.otherHolds(ip, self)})
	}
	return out
}

// otherHolds reports whether another node holds the Lease of a Service
// (other than self) asking for ip.
func (a *Agent) otherHolds(ip netip.Addr, self string) bool {
	for _, o := range a.users(ip) {
		m := a.models.Get(o)
		if m.Key != self && m.Handled && a.elector.HeldByOther(a.leaseKey(m.Key, m)) {
			return true
		}
	}
	return false
}

// addrFacts gathers the facts about one address over every Service on it.
func (a *Agent) addrFacts(ip netip.Addr) plan.AddrFacts {
	return plan.AddrFacts{Up: a.dp.IsBound(ip), Led: a.led(ip), OtherHolds: a.otherHolds(ip, ""), Draining: a.drainingOn(ip)}
}

// led reports whether this node is a candidate for some Service on ip that
// goes out by L2, and holds its Lease.
func (a *Agent) led(ip netip.Addr) bool { return a.term(ip).led }

// applyAddrs brings each address up or down as planned. Withdrawals come
// before any resignation (sync resigns last).
func (a *Agent) applyAddrs(log *slog.Logger, addrs []netip.Addr) error {
	var errs []error
	for _, ip := range addrs {
		f := a.addrFacts(ip)
		d := plan.Address(f)
		switch d.Action {
		case plan.Announce:
			if err := a.placeAddr(ip); err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, a.up(ip, f.Up))
		case plan.Withdraw:
			errs = append(errs, a.withdraw(log, ip, f.Up, d.Why))
		}
	}
	return errors.Join(errs...)
}

// withdraw stops announcing ip: it is removed, or — with Config.Preserve,
// while a Service this node knows still claims it — preserved.
func (a *Agent) withdraw(log *slog.Logger, ip netip.Addr, isUp bool, why string) error {
	preserve := a.cfg.Preserve && a.claimed(ip)
	if isUp {
		log.Info("withdrawing VIP", "vip", ip, "why", why, "preserve", preserve)
	}
	if preserve {
		return a.dp.Preserve(ip)
	}
	return a.dp.Down(ip)
}

// claimed reports whether an active Service claims ip.
func (a *Agent) claimed(ip netip.Addr) bool {
	for st := range a.byAddr.on(ip) {
		if slices.Contains(st.addrs, ip) {
			return true
		}
	}
	return false
}

// placeAddr tells the dataplane where ip goes: on a Service's VLAN, else
// on its interface (or the default).
func (a *Agent) placeAddr(ip netip.Addr) error {
	for st := range a.byAddr.on(ip) {
		if st.vlan.ID != 0 && slices.Contains(st.addrs, ip) {
			if err := a.dp.UseVLAN(ip, st.vlan.Parent, st.vlan.ID); err != nil {
				return fmt.Errorf("VLAN %d for %s: %w", st.vlan.ID, ip, err)
			}
			return nil
		}
	}
	a.dp.UseInterface(ip, a.interfaceFor(ip))
	return nil
}

// interfaceFor is the interface a Service claiming ip asks for (the first
// by Service key when several disagree; "" = the default).
func (a *Agent) interfaceFor(ip netip.Addr) string {
	var name, by string
	for st := range a.byAddr.on(ip) {
		if st.iface != "" && slices.Contains(st.addrs, ip) && (by == "" || st.key < by) {
			name, by = st.iface, st.key
		}
	}
	return name
}

// applyRoutes advertises or withdraws each address by BGP as planned.
func (a *Agent) applyRoutes(ctx context.Context, log *slog.Logger, addrs []netip.Addr) error {
	if a.router == nil {
		return nil
	}
	var errs []error
	advertised := a.router.Advertised()
	for _, ip := range addrs {
		pool, routed := a.routedHere(ip)
		d := plan.Route(routed)
		was := slices.Contains(advertised, ip)
		switch {
		case d.Action == plan.Announce:
			// Again when advertised: the advertisement objects may
			// have changed its routes (the speaker sends only changes).
			if !was {
				log.Info("advertising VIP by BGP", "vip", ip, "why", d.Why)
			}
			errs = append(errs, a.router.Advertise(ctx, ip, pool))
		case d.Action == plan.Withdraw && was:
			log.Info("withdrawing VIP route", "vip", ip, "why", d.Why)
			errs = append(errs, a.router.Withdraw(ctx, ip))
		}
	}
	return errors.Join(errs...)
}

// routedHere reports whether some Service on ip is advertised from here,
// and its pool.
func (a *Agent) routedHere(ip netip.Addr) (string, bool) {
	for st := range a.byAddr.on(ip) {
		if st.routed && slices.Contains(st.addrs, ip) {
			return st.pool, true
		}
	}
	return "", false
}

// up brings ip up (or extends it) until the latest moment this node may
// still hold it: the furthest expiry among the Leases it leads on ip, less
// the margin. The kernel drops the address by itself then, even if this
// process is stopped or killed. An address already up whose term is too
// short to extend keeps its earlier lifetime (ErrTooLate is no failure);
// one not up yet is retried.
func (a *Agent) up(ip netip.Addr, isUp bool) error {
	until, ok := a.until(ip)
	if !ok {
		return nil // leadership ended meanwhile: the next sync withdraws
	}
	err := a.dp.Up(ip, until)
	if isUp && errors.Is(err, vip.ErrTooLate) {
		a.log.Debug("VIP not extended: its term ends too soon", "vip", ip, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("announce %s: %w", ip, err)
	}
	return nil
}

func (a *Agent) until(ip netip.Addr) (time.Time, bool) {
	t := a.term(ip)
	if t.expiry.IsZero() {
		return time.Time{}, false
	}
	return t.expiry.Add(-a.cfg.AddrMargin), true
}

// addrTerm is what this node's L2 candidacies give one address: whether it
// leads any of them, and the furthest expiry among their terms.
type addrTerm struct {
	led    bool
	expiry time.Time
}

// term folds the L2 candidacies of the Services on ip.
func (a *Agent) term(ip netip.Addr) addrTerm {
	var out addrTerm
	for st := range a.byAddr.on(ip) {
		if !st.l2 || !st.candidate {
			continue
		}
		out.led = out.led || a.elector.Leading(st.lease)
		if t, ok := a.elector.Term(st.lease); ok && t.Expiry.After(out.expiry) {
			out.expiry = t.Expiry
		}
	}
	return out
}

// refreshAddrs extends the kernel lifetime of every address this node
// announces, from the elector's latest terms, with one read of each
// interface's addresses for all of them. An address whose leadership ended
// is left to the next sync (which withdraws it) or to the kernel; one whose
// term is too short to extend keeps its earlier lifetime.
func (a *Agent) refreshAddrs() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip, err := range a.dp.Refresh(a.ledUntil()) {
		if errors.Is(err, vip.ErrTooLate) {
			a.log.Debug("VIP not extended: its term ends too soon", "vip", ip, "err", err)
			continue
		}
		a.log.Warn("cannot extend VIP", "vip", ip, "err", err)
	}
}

// ledUntil is, for each bound address this node leads, what up gives it:
// the furthest expiry among the Leases on it, less the margin.
func (a *Agent) ledUntil() map[netip.Addr]time.Time {
	until := map[netip.Addr]time.Time{}
	for _, ip := range a.dp.Bound() {
		if t := a.term(ip); t.led && !t.expiry.IsZero() {
			until[ip] = t.expiry.Add(-a.cfg.AddrMargin)
		}
	}
	return until
}

// resignUnused resigns a Service's own Lease, or the Lease it named before
// (kube-vip.io/leaseName), when no Service this node is a candidate for
// uses it any more (this node may not lead it, or it is deleted, or it
// moved to another Lease), once its forwards are deleted. The shared Lease
// is released only on shutdown.
func (a *Agent) resignUnused(ctx context.Context, key string, st *serviceState, prev election.Key) error {
	var errs []error
	for _, k := range []election.Key{perServiceLease(key), prev} {
		if k.Name == "" || k == a.sharedLease() || a.leaseInUse(k) || !a.elector.Campaigning(k) || a.isDraining(st, key) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := a.elector.Resign(rctx, k); err != nil {
			errs = append(errs, fmt.Errorf("resign %s: %w", k, err))
		}
		cancel()
	}
	return errors.Join(errs...)
}

// leaseInUse reports whether this node campaigns for some Service by k.
func (a *Agent) leaseInUse(k election.Key) bool { return a.byLease.has(k) }

// cleanUpLease deletes the Lease of a deleted Service once no node holds
// it (this node resigned; another released it or is gone by our
// observation). Every node may try; the guarded delete lets one succeed.
//
// A Service missing from this node's cache is not yet a deleted one: after
// a watch outage the EndpointSlice (or Lease) informer may deliver before
// the Service informer, and a Lease this node has not observed yet may be
// held. Only the API server's own answer that the Service is gone counts;
// deleting a live holder's Lease would let another node create it and
// announce beside the holder (a chaos run caught exactly that).
//
// Nothing is asked of the API server for a key whose Lease this node's
// cache does not hold: an EndpointSlice synced before its Service (1,000
// of them when Services are created in bulk) would otherwise cost a
// throttled GET each on the sync path, holding up every other Service. A
// Lease the cache receives later syncs its Service's key again
// (LeaseChanged), so a late one is still cleaned up.
func (a *Agent) cleanUpLease(ctx context.Context, key string) error {
	own := perServiceLease(key)
	if a.janitor == nil || !a.elector.Observed(own) || a.elector.Campaigning(own) || a.elector.HeldByOther(own) ||
		(a.cfg.Namespace != "" && own.Namespace != a.cfg.Namespace) {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	switch gone, err := a.serviceGone(dctx, key); {
	case err != nil:
		return fmt.Errorf("lease clean-up %s: %w", key, err)
	case !gone:
		return nil
	}
	return a.janitor.DeleteUnheld(dctx, own)
}

// serviceGone asks the API server (not the cache) whether the Service key
// no longer exists.
func (a *Agent) serviceGone(ctx context.Context, key string) (bool, error) {
	ns, name, _ := strings.Cut(key, "/")
	_, err := a.client.Services(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("read service %s: %w", key, err)
	}
	return false, nil
}

// transition records and reports this node starting or stopping to announce
// a Service.
func (a *Agent) transition(log *slog.Logger, svc *kube.Service, st *serviceState, in statusIntent) {
	if st.announcing == in.up {
		return
	}
	st.announcing = in.up
	if in.up {
		log.Info("announcing service", "vips", joinAddrs(in.addrs))
		a.event(svc, corev1.EventTypeNormal, "VIPAcquired", "node %s announces %s", a.cfg.NodeName, joinAddrs(in.addrs))
	} else {
		log.Info("stopped announcing service")
		a.event(svc, corev1.EventTypeNormal, "VIPReleased", "node %s no longer announces the service", a.cfg.NodeName)
	}
	if a.metrics != nil {
		a.metrics.Announcing(st.key, in.up)
	}
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, ip := range addrs {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}

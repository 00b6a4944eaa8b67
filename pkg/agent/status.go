package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/plan"
)

// statusIntent is what a Service's status should say, as concluded by the
// last sync.
type statusIntent struct {
	v        plan.Verdict
	dhcp     bool         // the Service asks for an address from DHCP
	external netip.Addr   // the gateway's external address (UPnP)
	up       bool         // this node announces the Service
	addrs    []netip.Addr // what it announces (static or from DHCP)
	// DHCP: the MAC asked with, and whether the holder still waits for a
	// lease.
	mac     string
	pending bool
	// problems are the Service's non-blocking problems; the announcing
	// node reports them.
	problems []kube.Problem
	// ecmp: advertised by BGP from every eligible node, and this node holds
	// the status Lease: it writes the status for all of them.
	ecmp  bool
	nodes int // ecmp: how many nodes may advertise it
	peers int // ecmp: this node's established BGP sessions
}

func (in statusIntent) kind() plan.Status {
	if in.ecmp && in.v.Announceable() {
		return plan.StatusAnnounced
	}
	return plan.StatusFor(in.v, in.up, in.pending)
}

// intent starts the status intent of a sync from the verdict; DHCP and UPnP
// fill in the rest. This node announces the Service (up) when it leads it
// and has every address up on the LAN, or — BGP without L2 — advertised.
func (a *Agent) intent(svc *kube.Service, v plan.Verdict, st *serviceState, leading bool) statusIntent {
	in := statusIntent{v: v}
	if svc == nil {
		return in
	}
	in.addrs, in.dhcp, in.problems = svc.Addrs, svc.DHCP.Asked(), svc.Problems
	switch _, bgp := a.modes(svc); {
	case st.l2:
		in.up = leading && a.allBound(svc.Addrs)
	case a.routing(bgp) == plan.RoutingElected:
		in.up = leading && st.routed && allIn(svc.Addrs, a.router.Advertised())
	case a.routing(bgp) == plan.RoutingECMP:
		if in.ecmp = a.elector.Leading(a.cfg.StatusLease); in.ecmp {
			in.nodes, in.peers = a.eligibleNodes(svc), a.router.Peers()
		}
	}
	if !in.up && a.waitsForRoom(svc, st, leading) {
		in.v = in.v.WaitingForRoom(a.cfg.NodeName)
	}
	return in
}

// allBound reports whether every one of addrs is up here.
func (a *Agent) allBound(addrs []netip.Addr) bool {
	for _, ip := range addrs {
		if !a.dp.IsBound(ip) {
			return false
		}
	}
	return true
}

func allIn(addrs, set []netip.Addr) bool {
	for _, ip := range addrs {
		if !slices.Contains(set, ip) {
			return false
		}
	}
	return true
}

// publish hands the intent to the status worker.
func (a *Agent) publish(key string, svc *kube.Service, in statusIntent) {
	a.intentMu.Lock()
	if svc != nil {
		a.intents[key] = in
	} else {
		delete(a.intents, key)
	}
	a.intentMu.Unlock()
	if svc != nil && !a.cfg.NoServiceUpdates {
		a.statusQueue.Add(key)
	}
}

// processStatus is the status worker: it writes what sync concluded.
func (a *Agent) processStatus(ctx context.Context) bool {
	key, quit := a.statusQueue.Get()
	if quit {
		return false
	}
	defer a.statusQueue.Done(key)
	a.intentMu.Lock()
	in, ok := a.intents[key]
	a.intentMu.Unlock()
	ns, name, _ := strings.Cut(key, "/")
	svc, err := a.services.Services(ns).Get(name)
	if !ok || apierrors.IsNotFound(err) {
		a.statusQueue.Forget(key)
		return true
	}
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = a.writeStatus(wctx, svc, in)
		cancel()
	}
	if err != nil {
		lvl := slog.LevelWarn
		if apierrors.IsConflict(err) {
			// Usual when several nodes write the same "not announced"
			// status, or the Service changed meanwhile: the retry reads it
			// again.
			lvl = slog.LevelDebug
		}
		a.log.Log(ctx, lvl, "status write failed, will retry", "service", key, "err", err)
		a.statusQueue.AddRateLimited(key)
		return true
	}
	a.statusQueue.Forget(key)
	return true
}

// writeStatus makes the Service tell the truth. The announcing node writes
// the ingress, vipHost and a true condition; when no node can announce the
// Service, every node computes the same empty ingress and reason, and the
// node whose write lands reports a Warning (one Event, not one per node);
// otherwise the holder's word stands.
func (a *Agent) writeStatus(ctx context.Context, svc *corev1.Service, in statusIntent) error {
	switch in.kind() {
	case plan.StatusAnnounced:
		return a.writeAnnounced(ctx, svc, in)
	case plan.StatusPending:
		return a.ensureStatus(ctx, svc, nil, map[string]string{kube.AnnotationVIPHost: a.cfg.NodeName}, metav1.Condition{
			Type: ConditionAnnounced, Status: metav1.ConditionFalse, Reason: "DHCPPending",
			Message: fmt.Sprintf("node %s waits for a DHCP lease for MAC %s", a.cfg.NodeName, in.mac),
		})
	case plan.StatusTakeBack:
		return a.takeBack(ctx, svc)
	case plan.StatusNotAnnounced:
		return a.writeNotAnnounced(ctx, svc, in.v)
	}
	return nil
}

func (a *Agent) writeAnnounced(ctx context.Context, svc *corev1.Service, in statusIntent) error {
	if in.ecmp && !in.up {
		return a.writeRouted(ctx, svc, in)
	}
	annos := map[string]string{kube.AnnotationVIPHost: a.cfg.NodeName}
	if in.dhcp && len(in.addrs) > 0 {
		annos[kube.AnnotationRequestedIP] = joinAddrs(in.addrs)
		annos[kube.AnnotationHWAddr] = in.mac
	}
	ingress := ingressFor(svc, in.addrs)
	if in.external.IsValid() {
		ingress = append(ingress, ingressFor(svc, []netip.Addr{in.external})...)
	}
	err := a.ensureStatus(ctx, svc, ingress, annos, metav1.Condition{
		Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Announced",
		Message: fmt.Sprintf("node %s announces %s", a.cfg.NodeName, joinAddrs(in.addrs)),
	})
	if err == nil {
		a.reportProblems(svc, in.problems)
	}
	return err
}

// writeRouted writes the status of a Service every eligible node
// advertises by BGP: no single host (vipHost is removed), and how many nodes
// may advertise it.
func (a *Agent) writeRouted(ctx context.Context, svc *corev1.Service, in statusIntent) error {
	err := a.ensureStatus(ctx, svc, ingressFor(svc, in.addrs), map[string]string{kube.AnnotationVIPHost: ""}, metav1.Condition{
		Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Announced",
		Message: fmt.Sprintf("BGP: %s from %d nodes to %d peers", joinAddrs(in.addrs), in.nodes, in.peers),
	})
	if err == nil {
		a.reportProblems(svc, in.problems)
	}
	return err
}

// takeBack removes what vigil wrote on a Service that is no longer its
// (type changed, ignore, other class): the ingress only if it announced
// the Service.
func (a *Agent) takeBack(ctx context.Context, svc *corev1.Service) error {
	wroteIngress := svc.Annotations[kube.AnnotationVIPHost] != ""
	if !wroteIngress && meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced) == nil {
		return nil
	}
	ingress := svc.Status.LoadBalancer.Ingress
	if wroteIngress {
		ingress = nil
	}
	return a.ensureStatus(ctx, svc, ingress, map[string]string{kube.AnnotationVIPHost: ""}, metav1.Condition{})
}

// writeNotAnnounced writes the reason no node announces the Service. Every
// node computes the same status; the write carries the resourceVersion, so
// exactly one node's write changes it, and only that node sends the
// Warning Event.
func (a *Agent) writeNotAnnounced(ctx context.Context, svc *corev1.Service, v plan.Verdict) error {
	before := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced)
	changed := before == nil || before.Reason != v.Reason || before.Message != v.Message
	var ingress []corev1.LoadBalancerIngress
	if v.Reason == plan.ReasonNoAddress && svc.Annotations[kube.AnnotationVIPHost] == "" {
		// Not vigil's ingress: another load balancer's (MetalLB's, during
		// a switch). It stays until an address is asked for — the
		// allocator adopts it as the Service's (docs/migrate-metallb.md).
		ingress = svc.Status.LoadBalancer.Ingress
	}
	err := a.ensureStatus(ctx, svc, ingress, map[string]string{kube.AnnotationVIPHost: ""}, metav1.Condition{
		Type: ConditionAnnounced, Status: metav1.ConditionFalse, Reason: v.Reason, Message: v.Message,
	})
	if err == nil && changed && v.Warning {
		a.recorder.Event(svc, corev1.EventTypeWarning, v.Reason, v.Message)
	}
	return err
}

// reportProblems sends one Warning per non-blocking problem the announcing
// node has not reported yet for this Service.
func (a *Agent) reportProblems(svc *corev1.Service, problems []kube.Problem) {
	if len(problems) == 0 {
		return
	}
	key := svc.Namespace + "/" + svc.Name
	a.mu.Lock()
	var fresh []kube.Problem
	if st, ok := a.states[key]; ok {
		for _, p := range problems {
			if st.once("problem " + p.String()) {
				fresh = append(fresh, p)
			}
		}
	}
	a.mu.Unlock()
	for _, p := range fresh {
		a.recorder.Event(svc, corev1.EventTypeWarning, p.Reason, p.Field+": "+p.Message)
	}
}

func ingressFor(svc *corev1.Service, addrs []netip.Addr) []corev1.LoadBalancerIngress {
	mode := corev1.LoadBalancerIPModeVIP
	var ports []corev1.PortStatus
	for _, p := range kube.Ports(svc) {
		ports = append(ports, corev1.PortStatus{Port: p.Port, Protocol: p.Protocol})
	}
	out := make([]corev1.LoadBalancerIngress, 0, len(addrs))
	for _, ip := range addrs {
		out = append(out, corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &mode, Ports: ports})
	}
	return out
}

// ensureStatus writes ingress, annotations (an empty value removes one) and
// cond (a zero cond removes vigil's condition) when they differ from what
// the Service shows.
func (a *Agent) ensureStatus(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress, annotations map[string]string, cond metav1.Condition) error {
	// Status first, annotations second: kube-vip.io/vipHost is how a retry
	// knows the ingress is vigil's to take back, so it goes last.
	if err := a.updateStatus(ctx, svc, ingress, cond); err != nil {
		return err
	}
	return a.annotate(ctx, svc, annotations)
}

func (a *Agent) updateStatus(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress, cond metav1.Condition) error {
	st := svc.Status.DeepCopy()
	st.LoadBalancer.Ingress = ingress
	if cond.Type == "" {
		meta.RemoveStatusCondition(&st.Conditions, ConditionAnnounced)
	} else {
		cond.ObservedGeneration = svc.Generation
		meta.SetStatusCondition(&st.Conditions, cond)
	}
	if len(st.LoadBalancer.Ingress) == 0 {
		st.LoadBalancer.Ingress = nil
	}
	if len(st.Conditions) == 0 {
		st.Conditions = nil
	}
	if equality.Semantic.DeepEqual(svc.Status, *st) {
		return nil
	}
	cp := svc.DeepCopy()
	cp.Status = *st
	if _, err := a.client.Services(svc.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}

func (a *Agent) annotate(ctx context.Context, svc *corev1.Service, annotations map[string]string) error {
	change := map[string]any{}
	for k, v := range annotations {
		switch {
		case svc.Annotations[k] == v:
		case v == "":
			change[k] = nil
		default:
			change[k] = v
		}
	}
	if len(change) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": change}})
	if err != nil {
		return fmt.Errorf("annotate: %w", err)
	}
	if _, err := a.client.Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("annotate: %w", err)
	}
	return nil
}

// event records an Event on a Service known by its parse (nil: none).
func (a *Agent) event(svc *kube.Service, typ, reason, format string, args ...any) {
	if svc == nil {
		return
	}
	ref := &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID, ResourceVersion: svc.Version}
	a.recorder.Eventf(ref, typ, reason, format, args...)
}

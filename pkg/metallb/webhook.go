package metallb

import (
	"context"
	"fmt"
	"slices"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
)

// Webhooks reads what the leftover-webhook check needs (pkg/cli adapts a
// clientset).
type Webhooks interface {
	Validating(ctx context.Context) ([]admissionv1.ValidatingWebhookConfiguration, error)
	// ReadyEndpoints counts the ready endpoints of a Service.
	ReadyEndpoints(ctx context.Context, namespace, service string) (int, error)
}

// Leftover is a validating webhook of MetalLB's that nothing answers: the
// API server then refuses (failurePolicy Fail) every change to MetalLB's
// objects.
type Leftover struct {
	Configuration, Webhook string
	UID                    string
	Service                string // namespace/name
}

// leftovers finds webhooks on metallb.io whose Service has no ready
// endpoint (MetalLB's controller is gone).
func leftovers(ctx context.Context, w Webhooks) ([]Leftover, error) {
	cfgs, err := w.Validating(ctx)
	if err != nil {
		return nil, fmt.Errorf("list validating webhook configurations: %w", err)
	}
	var out []Leftover
	for _, c := range cfgs {
		for _, h := range c.Webhooks {
			svc := h.ClientConfig.Service
			if svc == nil || !onMetalLB(h.Rules) {
				continue
			}
			n, err := w.ReadyEndpoints(ctx, svc.Namespace, svc.Name)
			if err != nil {
				return nil, fmt.Errorf("endpoints of webhook Service %s/%s: %w", svc.Namespace, svc.Name, err)
			}
			if n == 0 {
				out = append(out, Leftover{Configuration: c.Name, Webhook: h.Name, UID: string(c.UID), Service: svc.Namespace + "/" + svc.Name})
			}
		}
	}
	return out, nil
}

func onMetalLB(rules []admissionv1.RuleWithOperations) bool {
	return slices.ContainsFunc(rules, func(r admissionv1.RuleWithOperations) bool {
		return slices.Contains(r.APIGroups, V1beta1.Group)
	})
}

// checkWebhooks reports, once per configuration, MetalLB's validating
// webhooks left registered with nothing behind them.
func (s *Source) checkWebhooks(ctx context.Context) {
	if s.o.Webhooks == nil || s.o.Writes == nil || !s.o.Writes() {
		return
	}
	found, err := leftovers(ctx, s.o.Webhooks)
	if err != nil {
		s.logOnce("webhooks", "cannot check for MetalLB's leftover validating webhook", "err", err)
		return
	}
	s.clearLog("webhooks")
	now := map[string]bool{}
	for _, l := range found {
		key := l.UID + "/" + l.Webhook
		now[key] = true
		if s.webhooksSaid[key] {
			continue
		}
		s.webhooksSaid[key] = true
		msg := fmt.Sprintf("MetalLB's validating webhook %s (configuration %s) is registered but its Service %s has no ready endpoint: the API server will refuse changes to MetalLB's objects. If MetalLB is gone, delete it: kubectl delete validatingwebhookconfiguration %s",
			l.Webhook, l.Configuration, l.Service, l.Configuration)
		s.o.Log.Warn(msg)
		if s.o.Recorder != nil {
			ref := &corev1.ObjectReference{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration", Name: l.Configuration}
			s.o.Recorder.Event(ref, corev1.EventTypeWarning, "LeftoverWebhook", msg)
		}
	}
	for key := range s.webhooksSaid {
		if !now[key] {
			delete(s.webhooksSaid, key)
		}
	}
}

package metallb

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

type fakeWebhooks struct {
	cfgs  []admissionv1.ValidatingWebhookConfiguration
	ready map[string]int
}

func (f *fakeWebhooks) Validating(context.Context) ([]admissionv1.ValidatingWebhookConfiguration, error) {
	return f.cfgs, nil
}

func (f *fakeWebhooks) ReadyEndpoints(_ context.Context, ns, svc string) (int, error) {
	return f.ready[ns+"/"+svc], nil
}

func webhookConfig(name, group, svc string) admissionv1.ValidatingWebhookConfiguration {
	return admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Webhooks: []admissionv1.ValidatingWebhook{{Name: name + ".example",
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "metallb-system", Name: svc}},
			Rules:        []admissionv1.RuleWithOperations{{Rule: admissionv1.Rule{APIGroups: []string{group}}}}}}}
}

// MetalLB's webhook with no endpoint behind it is told once (log and
// Warning Event, saying what to delete); a webhook of another group, or
// one that answers, is not; told again if it comes back after answering.
func TestLeftoverWebhook(t *testing.T) {
	hooks := &fakeWebhooks{
		cfgs:  []admissionv1.ValidatingWebhookConfiguration{webhookConfig("metallb-webhook-configuration", "metallb.io", "metallb-webhook-service"), webhookConfig("other", "example.com", "other")},
		ready: map[string]int{},
	}
	rec, log := record.NewFakeRecorder(10), &syncBuffer{}
	s := New(nil, nil, nil, Options{Recorder: rec, Log: slog.New(slog.NewTextHandler(log, nil)), Writes: func() bool { return true }, Webhooks: hooks})
	ctx := context.Background()
	s.checkWebhooks(ctx)
	s.checkWebhooks(ctx)
	if n := len(rec.Events); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	ev := <-rec.Events
	for _, want := range []string{"Warning LeftoverWebhook", "metallb-webhook-configuration", "metallb-system/metallb-webhook-service", "kubectl delete validatingwebhookconfiguration metallb-webhook-configuration"} {
		if !strings.Contains(ev, want) {
			t.Errorf("event %q lacks %q", ev, want)
		}
	}
	if n := log.count("LeftoverWebhook") + log.count("has no ready endpoint"); n != 1 {
		t.Errorf("logged %d times, want once", n)
	}
	hooks.ready["metallb-system/metallb-webhook-service"] = 1
	s.checkWebhooks(ctx)
	hooks.ready["metallb-system/metallb-webhook-service"] = 0
	s.checkWebhooks(ctx)
	if n := len(rec.Events); n != 1 {
		t.Errorf("%d events after the webhook answered and stopped again, want 1 more", n)
	}
}

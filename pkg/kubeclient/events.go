package kubeclient

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

// EventSink writes a broadcaster's Events in each Event's own namespace
// through events.
func EventSink(events func(namespace string) Events) record.EventSink {
	return eventSink{events: events}
}

type eventSink struct {
	events func(namespace string) Events
}

func (s eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	return s.events(e.Namespace).Create(context.Background(), e, metav1.CreateOptions{})
}

func (s eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	return s.events(e.Namespace).Update(context.Background(), e, metav1.UpdateOptions{})
}

// Patch applies a strategic merge patch to e (its namespace and name).
func (s eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	return s.events(e.Namespace).Patch(context.Background(), e.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
}

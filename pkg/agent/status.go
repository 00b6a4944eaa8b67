package agent

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ensureStatus writes ingress, annotations (an empty value removes one) and
// cond (a zero cond removes vigil's condition) when they differ from what
// the Service shows.
func (a *Agent) ensureStatus(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress, annotations map[string]string, cond metav1.Condition) error {
	// Status first, annotations second: kube-vip.io/vipHost is how a retry
	// knows the ingress is vigil's to take back, so it goes last.
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
	if !equality.Semantic.DeepEqual(svc.Status, *st) {
		cp := svc.DeepCopy()
		cp.Status = *st
		if _, err := a.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update status: %w", err)
		}
	}
	change := map[string]any{}
	for k, v := range annotations {
		if svc.Annotations[k] == v {
			continue
		}
		if v == "" {
			change[k] = nil
		} else {
			change[k] = v
		}
	}
	if len(change) == 0 {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": change}})
	if _, err := a.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("annotate: %w", err)
	}
	return nil
}

package ipam

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// IPPoolResource is the IPPool CRD (manifests/ippool-crd.yaml).
var IPPoolResource = schema.GroupVersionResource{Group: "vigil.io", Version: "v1alpha1", Resource: "ippools"}

// IPPool is a set of addresses for LoadBalancer Services.
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              IPPoolSpec   `json:"spec"`
	Status            IPPoolStatus `json:"status,omitempty"`
}

// IPPoolSpec is what a pool offers.
type IPPoolSpec struct {
	Addresses     []string `json:"addresses"`
	AutoAssign    *bool    `json:"autoAssign,omitempty"`
	AvoidBuggyIPs bool     `json:"avoidBuggyIPs,omitempty"`
	Namespaces    []string `json:"namespaces,omitempty"`
	Priority      int      `json:"priority,omitempty"`
	// NamespaceSelectors add the namespaces whose labels match one of
	// them to Namespaces; ServiceSelectors, if any, restrict the pool to
	// Services whose labels match one (MetalLB's serviceAllocation).
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors,omitempty"`
	ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors,omitempty"`
}

// IPPoolStatus is what the allocator reports.
type IPPoolStatus struct {
	IPv4       *FamilyStatus      `json:"ipv4,omitempty"`
	IPv6       *FamilyStatus      `json:"ipv6,omitempty"`
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// FamilyStatus counts a pool's addresses of one family (strings: a /64
// holds more than an int64).
type FamilyStatus struct {
	Total string `json:"total"`
	Used  string `json:"used"`
	Free  string `json:"free"`
}

func poolFromUnstructured(obj any) (*IPPool, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("ipam: not an unstructured object: %T", obj)
	}
	var p IPPool
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		return nil, fmt.Errorf("ipam: decode IPPool %s: %w", u.GetName(), err)
	}
	return &p, nil
}

// metaOf is the identity of an IPPool that could not be decoded.
func metaOf(u *unstructured.Unstructured) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: u.GetName(), UID: u.GetUID()}
}

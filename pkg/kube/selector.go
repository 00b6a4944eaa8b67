package kube

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Selector is a Kubernetes label selector matching plain label maps: what
// allocator.LabelMatcher asks for. Make it with SelectorFrom.
type Selector struct{ sel labels.Selector }

// SelectorFrom converts a metav1.LabelSelector, checking it as the API
// server does (operators, values, label syntax). An empty selector matches
// everything.
func SelectorFrom(ls metav1.LabelSelector) (Selector, error) {
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		return Selector{}, fmt.Errorf("label selector: %w", err)
	}
	return Selector{sel: sel}, nil
}

// Matches reports whether the labels are selected.
func (s Selector) Matches(l map[string]string) bool { return s.sel.Matches(labels.Set(l)) }

// String is the selector in kubectl's syntax (a=b,c in (d)).
func (s Selector) String() string { return s.sel.String() }

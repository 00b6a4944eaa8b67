package kube

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSelectorFrom(t *testing.T) {
	labels := map[string]map[string]string{
		"none":   nil,
		"gold":   {"tier": "gold"},
		"silver": {"tier": "silver", "team": "a"},
	}
	for _, tt := range []struct {
		name    string
		ls      metav1.LabelSelector
		want    []string // of labels, sorted
		wantErr bool
	}{
		{name: "empty matches everything", want: []string{"gold", "none", "silver"}},
		{name: "matchLabels", ls: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}, want: []string{"gold"}},
		{name: "NotIn", ls: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"gold"}}}},
			want: []string{"none", "silver"}},
		{name: "labels AND expressions", ls: metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}, MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpExists}}},
			want: []string{"silver"}},
		{name: "bad operator", ls: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Gt", Values: []string{"1"}}}}, wantErr: true},
		{name: "In without values", ls: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn}}}, wantErr: true},
		{name: "bad label value", ls: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "not ok"}}, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := SelectorFrom(tt.ls)
			if (err != nil) != tt.wantErr {
				t.Fatalf("SelectorFrom: %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			var got []string
			for _, name := range []string{"gold", "none", "silver"} {
				if s.Matches(labels[name]) {
					got = append(got, name)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s selects (-want +got):\n%s", s, diff)
			}
		})
	}
}

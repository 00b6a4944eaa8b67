package ipam

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

// An IPPool's namespaceSelectors and serviceSelectors become the pool's;
// a bad one is an error naming it (the IPPool's InvalidPool Event).
func TestToPoolSelectors(t *testing.T) {
	team := metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	gold := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"gold"}}}}
	bad := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn}}}
	reqs := map[string]allocator.Request{
		"plain":        {Namespace: "dev"},
		"team ns":      {Namespace: "dev", NamespaceLabels: map[string]string{"team": "a"}},
		"named ns":     {Namespace: "web"},
		"gold":         {Namespace: "dev", Labels: map[string]string{"tier": "gold"}},
		"gold in team": {Namespace: "dev", Labels: map[string]string{"tier": "gold"}, NamespaceLabels: map[string]string{"team": "a"}},
	}
	for _, tt := range []struct {
		name    string
		spec    IPPoolSpec
		serves  []string // of reqs, sorted
		wantErr string
	}{
		{name: "no selectors", spec: IPPoolSpec{}, serves: []string{"gold", "gold in team", "named ns", "plain", "team ns"}},
		{name: "namespaces or namespaceSelectors", spec: IPPoolSpec{Namespaces: []string{"web"}, NamespaceSelectors: []metav1.LabelSelector{team}},
			serves: []string{"gold in team", "named ns", "team ns"}},
		{name: "and serviceSelectors", spec: IPPoolSpec{NamespaceSelectors: []metav1.LabelSelector{team}, ServiceSelectors: []metav1.LabelSelector{gold}},
			serves: []string{"gold in team"}},
		{name: "bad namespace selector", spec: IPPoolSpec{NamespaceSelectors: []metav1.LabelSelector{team, bad}}, wantErr: "namespaceSelectors[1]: label selector: "},
		{name: "bad service selector", spec: IPPoolSpec{ServiceSelectors: []metav1.LabelSelector{bad}}, wantErr: "serviceSelectors[0]: label selector: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Addresses = []string{"10.0.0.0/30"}
			p, err := toPool(&IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: tt.spec})
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Errorf("toPool: %v, want an error starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, name := range []string{"gold", "gold in team", "named ns", "plain", "team ns"} {
				if p.Serves(reqs[name]) {
					got = append(got, name)
				}
			}
			if diff := cmp.Diff(tt.serves, got); diff != "" {
				t.Errorf("serves (-want +got):\n%s", diff)
			}
		})
	}
}

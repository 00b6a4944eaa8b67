package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/vigil-lb/vigil/pkg/kube"
)

// The allocator reads the same three class settings as the agents;
// svc_allocator_default_class still sets legacy handling.
func TestClassSettings(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want kube.ClassPolicy
	}{
		{"defaults", nil, nil, kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}},
		{"kube-vip names", nil, map[string]string{"lb_class_name": "x", "lb_class_only": "true", "lb_class_legacy_handling": "false"},
			kube.ClassPolicy{Name: "x", Only: true}},
		{"the allocator's older name", nil, map[string]string{"svc_allocator_default_class": "false"},
			kube.ClassPolicy{Name: kube.DefaultClass}},
		{"kube-vip's name wins", nil, map[string]string{"lb_class_legacy_handling": "true", "svc_allocator_default_class": "false"},
			kube.ClassPolicy{Name: kube.DefaultClass, Legacy: true}},
		{"flag wins", []string{"--lb-class-legacy-handling=false"}, map[string]string{"lb_class_legacy_handling": "true"},
			kube.ClassPolicy{Name: kube.DefaultClass}},
	}
	for _, tt := range tests {
		var got kube.ClassPolicy
		table := classSettings(&got)
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		register(fs, table)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
		if err := applyEnv(fs, table, lookup); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tt.name, diff)
		}
	}
}

// `vigil allocator` has the class flags (and registering them twice would
// panic).
func TestAllocatorCommandClassFlags(t *testing.T) {
	cmd := newAllocatorCommand()
	for _, f := range []string{"lb-class-name", "lb-class-only", "lb-class-legacy-handling"} {
		if cmd.Flags().Lookup(f) == nil {
			t.Errorf("vigil allocator has no --%s", f)
		}
	}
}

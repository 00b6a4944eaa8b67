package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/pflag"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/vigil-lb/vigil/pkg/kube"
)

func TestKubevipValidate(t *testing.T) {
	tests := []struct {
		name       string
		prometheus string
		change     func(*kubevipOptions)
		wantErr    string // substring; "" means valid
	}{
		{name: "defaults", prometheus: ":2112"},
		{name: "metrics off", prometheus: ""},
		{name: "host and port", prometheus: "127.0.0.1:2112"},
		{name: "IPv6 host", prometheus: "[::1]:2112"},
		{name: "host name", prometheus: "localhost:2112"},
		{name: "port out of range", prometheus: ":99999", wantErr: `prometheus_server=":99999"`},
		{name: "port zero", prometheus: ":0", wantErr: `prometheus_server=":0"`},
		{name: "no port", prometheus: "2112", wantErr: `prometheus_server="2112"`},
		{name: "named port", prometheus: ":http", wantErr: `prometheus_server=":http"`},
		{name: "bad host", prometheus: "no host!:2112", wantErr: `prometheus_server="no host!:2112"`},
		{name: "health port", prometheus: ":2112", change: func(o *kubevipOptions) { o.healthPort = 8080 }},
		{name: "health port too big", prometheus: ":2112", change: func(o *kubevipOptions) { o.healthPort = 65536 }, wantErr: "health_check_port=65536"},
		{name: "health port negative", prometheus: ":2112", change: func(o *kubevipOptions) { o.healthPort = -1 }, wantErr: "health_check_port=-1"},
		{name: "health port is the metrics port", prometheus: ":2112", change: func(o *kubevipOptions) { o.healthPort = 2112 }, wantErr: "health_check_port=2112: prometheus_server"},
		{name: "dns mode dual", prometheus: ":2112", change: func(o *kubevipOptions) { o.dnsMode = "dual" }},
		{name: "dns mode bad", prometheus: ":2112", change: func(o *kubevipOptions) { o.dnsMode = "both" }, wantErr: `dns_mode "both"`},
		{name: "dns server", prometheus: ":2112", change: func(o *kubevipOptions) { o.dnsServer = "198.18.0.1:53" }},
		{name: "dns server without port", prometheus: ":2112", change: func(o *kubevipOptions) { o.dnsServer = "198.18.0.1" }, wantErr: `vigil_dns_server="198.18.0.1"`},
		{name: "dns refresh zero", prometheus: ":2112", change: func(o *kubevipOptions) { o.dnsRefresh = 0 }, wantErr: "vigil_dns_refresh=0"},
		{name: "skip DAD accepted", prometheus: ":2112", change: func(o *kubevipOptions) { o.skipDAD = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validManager()
			o.prometheus = tt.prometheus
			if tt.change != nil {
				tt.change(&o.kv)
			}
			err := o.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validate error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// clusterRoleOf renders the DaemonSet manifest with flags and returns the
// rules its ClusterRole adds to ClusterRoleRules.
func clusterRoleExtra(t *testing.T, flags ...string) []rbacv1.PolicyRule {
	t.Helper()
	o := defaultManifestOptions()
	fs := pflag.NewFlagSet("manifest", pflag.ContinueOnError)
	addManifestFlags(fs, o)
	if err := fs.Parse(flags); err != nil {
		t.Fatal(err)
	}
	objs, err := daemonSetManifest(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if cr, ok := obj.(*rbacv1.ClusterRole); ok {
			base := len(ClusterRoleRules())
			if diff := cmp.Diff(ClusterRoleRules(), cr.Rules[:base]); diff != "" {
				t.Errorf("base rules changed (-want +got):\n%s", diff)
			}
			return cr.Rules[base:]
		}
	}
	t.Fatal("no ClusterRole")
	return nil
}

// The manifest flags of kube-vip settings that need more permissions add
// exactly those, and the setting.
func TestManifestKubevipFlags(t *testing.T) {
	tests := []struct {
		flags     []string
		wantRules []rbacv1.PolicyRule
		wantEnv   string
	}{
		{nil, nil, ""},
		{[]string{"--endpoints"}, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"endpoints"}, Verbs: []string{"list", "watch"}}}, "enable_endpoints=true"},
		{[]string{"--node-labeling"}, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"patch"}}}, "enable_node_labeling=true"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.flags, " "), func(t *testing.T) {
			if diff := cmp.Diff(tt.wantRules, clusterRoleExtra(t, tt.flags...), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("extra rules (-want +got):\n%s", diff)
			}
			env := envOf(t, append([]string{"manifest", "daemonset"}, tt.flags...)...)
			if tt.wantEnv != "" && !slices.Contains(env, tt.wantEnv) {
				t.Errorf("env %v lacks %s", env, tt.wantEnv)
			}
		})
	}
}

// Every kube-vip.io annotation vigil reads is in `vigil manager --help`
// and has a word in docs/configuration.md.
func TestKubevipAnnotationsNamed(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), docPath))
	if err != nil {
		t.Fatal(err)
	}
	help := newManagerCommand(program{}).Long
	for _, a := range kube.KubevipAnnotations() {
		if !bytes.Contains(raw, []byte("`"+a)) {
			t.Errorf("%s does not mention `%s`", docPath, a)
		}
		if !strings.Contains(help, a) {
			t.Errorf("vigil manager --help does not name %s", a)
		}
	}
}

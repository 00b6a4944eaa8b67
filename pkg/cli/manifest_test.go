package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spf13/pflag"
	"github.com/vigil-lb/vigil/pkg/crdconfig"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

// updateEnv regenerates the checked-in manifests and the settings table in
// docs/configuration.md:
//
//	UPDATE_MANIFESTS=1 go test ./pkg/cli -run UpToDate
const updateEnv = "UPDATE_MANIFESTS"

// repoRoot is the repository root, found from this file.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return filepath.Join(filepath.Dir(self), "..", "..")
}

// run runs the vigil command line and returns its output.
func run(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	root := newRoot(program{})
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	if err := root.Execute(); err != nil {
		t.Fatalf("vigil %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// checkGenerated compares path (relative to the repository root) with want,
// or rewrites it when UPDATE_MANIFESTS is set.
func checkGenerated(t *testing.T, path, want string) {
	t.Helper()
	full := filepath.Join(repoRoot(t), path)
	if os.Getenv(updateEnv) != "" {
		if err := os.WriteFile(full, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(full)
	if err != nil {
		t.Fatalf("%v (regenerate with %s=1 go test ./pkg/cli -run UpToDate)", err, updateEnv)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("%s is out of date (-generated +file); regenerate with %s=1 go test ./pkg/cli -run UpToDate:\n%s", path, updateEnv, diff)
	}
}

// checkedInManifests are the files in manifests/ and the arguments that
// render them.
func checkedInManifests() map[string][]string {
	const image = "--image=ghcr.io/vigil-lb/vigil:latest"
	return map[string][]string{
		"manifests/daemonset.yaml":    {"manifest", "daemonset", image},
		"manifests/pod.yaml":          {"manifest", "pod", image},
		"manifests/bgp-crds.yaml":     {"manifest", "crds"},
		"manifests/metallb-crds.yaml": {"manifest", "metallb-crds"},
	}
}

func TestManifestsUpToDate(t *testing.T) {
	for path, args := range checkedInManifests() {
		t.Run(filepath.Base(path), func(t *testing.T) {
			checkGenerated(t, path, run(t, args...))
		})
	}
}

// splitDocs splits a YAML stream at its "---" lines.
func splitDocs(s string) []string {
	var docs []string
	for _, d := range strings.Split(s, "---\n") {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

// TestManifestsDecodeStrictly decodes every document with client-go's
// scheme, rejecting unknown and duplicate fields, re-encodes it and checks
// nothing was lost, then checks the fields the API server requires.
func TestManifestsDecodeStrictly(t *testing.T) {
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	variants := map[string][]string{
		"daemonset":                 {"manifest", "daemonset"},
		"pod":                       {"manifest", "pod"},
		"daemonset other namespace": {"manifest", "daemonset", "--namespace=vigil-system", "--interface=eth0", "--upnp", "--service-election=false", "--arp=false"},
		"pod long leases":           {"manifest", "pod", "--lease-duration=15", "--renew-deadline=10", "--retry-period=2"},
	}
	for name, args := range variants {
		t.Run(name, func(t *testing.T) {
			docs := splitDocs(run(t, args...))
			var kinds []string
			var objs []any
			for _, doc := range docs {
				obj, gvk, err := decoder.Decode([]byte(doc), nil, nil)
				if err != nil {
					t.Fatalf("strict decode: %v\n%s", err, doc)
				}
				kinds = append(kinds, gvk.Kind)
				objs = append(objs, obj)
				again, err := objectYAML(obj)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(doc, string(again)); diff != "" {
					t.Errorf("%s does not survive a round trip (-rendered +decoded):\n%s", gvk.Kind, diff)
				}
			}
			for _, p := range requiredFieldProblems(objs) {
				t.Error(p)
			}
			want := []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "DaemonSet"}
			if args[1] == "pod" {
				want = []string{"Pod"}
			}
			if diff := cmp.Diff(want, kinds); diff != "" {
				t.Errorf("kinds (-want +got):\n%s", diff)
			}
		})
	}
}

// requiredFieldProblems checks what the API server's validation would
// reject in the objects vigil generates, and that they refer to each other.
func requiredFieldProblems(objs []any) []string {
	var p []string
	names := map[string]string{} // kind -> namespace/name
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			names["ServiceAccount"] = o.Namespace + "/" + o.Name
		case *rbacv1.ClusterRole:
			names["ClusterRole"] = o.Name
			for i, r := range o.Rules {
				if len(r.APIGroups) == 0 || len(r.Resources) == 0 || len(r.Verbs) == 0 {
					p = append(p, fmt.Sprintf("ClusterRole rule %d is incomplete: %+v", i, r))
				}
			}
		case *rbacv1.ClusterRoleBinding:
			if o.RoleRef.Kind != "ClusterRole" || o.RoleRef.APIGroup != rbacv1.GroupName {
				p = append(p, fmt.Sprintf("bad roleRef %+v", o.RoleRef))
			}
			names["RoleRef"] = o.RoleRef.Name
			for _, s := range o.Subjects {
				names["Subject"] = s.Namespace + "/" + s.Name
			}
		case *appsv1.DaemonSet:
			sel := labels.SelectorFromSet(o.Spec.Selector.MatchLabels)
			if len(o.Spec.Selector.MatchLabels) == 0 || !sel.Matches(labels.Set(o.Spec.Template.Labels)) {
				p = append(p, "DaemonSet selector does not match its template")
			}
			p = append(p, podSpecProblems(o.Spec.Template.Spec)...)
			names["ServiceAccountName"] = o.Namespace + "/" + o.Spec.Template.Spec.ServiceAccountName
		case *corev1.Pod:
			p = append(p, podSpecProblems(o.Spec)...)
		}
		p = append(p, metaProblems(obj)...)
	}
	if names["ServiceAccount"] != "" {
		for _, k := range []string{"Subject", "ServiceAccountName"} {
			if names[k] != names["ServiceAccount"] {
				p = append(p, fmt.Sprintf("%s %q is not the ServiceAccount %q", k, names[k], names["ServiceAccount"]))
			}
		}
		if names["RoleRef"] != names["ClusterRole"] {
			p = append(p, fmt.Sprintf("roleRef %q is not the ClusterRole %q", names["RoleRef"], names["ClusterRole"]))
		}
	}
	return p
}

func metaProblems(obj any) []string {
	o, ok := obj.(interface {
		GetName() string
		GetNamespace() string
	})
	if !ok {
		return []string{fmt.Sprintf("%T has no metadata", obj)}
	}
	clusterScoped := false
	switch obj.(type) {
	case *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding:
		clusterScoped = true
	}
	var p []string
	if o.GetName() == "" {
		p = append(p, fmt.Sprintf("%T has no name", obj))
	}
	if (o.GetNamespace() == "") != clusterScoped {
		p = append(p, fmt.Sprintf("%T %s: namespace %q is wrong for its scope", obj, o.GetName(), o.GetNamespace()))
	}
	return p
}

func podSpecProblems(spec corev1.PodSpec) []string {
	var p []string
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range spec.Containers {
		if c.Name == "" || c.Image == "" {
			p = append(p, fmt.Sprintf("container %q without name or image", c.Name))
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				p = append(p, fmt.Sprintf("mount %s of a missing volume %q", m.MountPath, m.Name))
			}
		}
		for _, e := range c.Env {
			if e.Name == "" || (e.Value != "" && e.ValueFrom != nil) {
				p = append(p, fmt.Sprintf("bad env var %+v", e))
			}
		}
	}
	if len(spec.Containers) == 0 {
		p = append(p, "no containers")
	}
	return p
}

// envOf renders a manifest and returns its container's environment as
// name=value (fieldPath for fieldRefs).
func envOf(t *testing.T, args ...string) []string {
	t.Helper()
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var out []string
	for _, doc := range splitDocs(run(t, args...)) {
		obj, _, err := decoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var spec corev1.PodSpec
		switch o := obj.(type) {
		case *corev1.Pod:
			spec = o.Spec
		case *appsv1.DaemonSet:
			spec = o.Spec.Template.Spec
		default:
			continue
		}
		for _, e := range spec.Containers[0].Env {
			v := e.Value
			switch {
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				v = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
			case e.ValueFrom != nil:
				v = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
			}
			out = append(out, e.Name+"="+v)
		}
	}
	return out
}

func TestManifestEnv(t *testing.T) {
	common := []string{"vip_nodename=fieldRef:spec.nodeName", "POD_NAMESPACE=fieldRef:metadata.namespace", "POD_NAME=fieldRef:metadata.name"}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{
			name: "daemonset defaults",
			args: []string{"manifest", "daemonset"},
			want: append([]string{"svc_enable=true", "svc_election=true", "vip_arp=true", "vip_leaseduration=5", "vip_renewdeadline=3", "vip_retryperiod=1", "prometheus_server=:2112"}, common...),
		},
		{
			name: "pod defaults",
			args: []string{"manifest", "pod"},
			want: append([]string{"svc_enable=true", "svc_election=true", "vip_arp=true", "vip_leaseduration=5", "vip_renewdeadline=3", "vip_retryperiod=1", "prometheus_server=:2112",
				"vip_nodename=fieldRef:spec.nodeName", "k8s_config_file=/etc/kubernetes/admin.conf"}, common[1:]...),
		},
		{
			name: "every flag",
			args: []string{"manifest", "daemonset", "--interface=bond0", "--service-election=false", "--upnp", "--arp=false", "--lease-duration=20", "--renew-deadline=15", "--retry-period=5"},
			want: append([]string{"svc_enable=true", "svc_election=false", "vip_arp=false", "vip_interface=bond0", "vip_leaseduration=20", "vip_renewdeadline=15", "vip_retryperiod=5", "enableUPNP=true", "prometheus_server=:2112"}, common...),
		},
		{
			name: "election mode service is the default, not written",
			args: []string{"manifest", "daemonset", "--election-mode=service"},
			want: append([]string{"svc_enable=true", "svc_election=true", "vip_arp=true", "vip_leaseduration=5", "vip_renewdeadline=3", "vip_retryperiod=1", "prometheus_server=:2112"}, common...),
		},
		{
			name: "election mode node",
			args: []string{"manifest", "pod", "--election-mode=node"},
			want: append([]string{"svc_enable=true", "svc_election=true", "vip_arp=true", "vip_leaseduration=5", "vip_renewdeadline=3", "vip_retryperiod=1", "vigil_election_mode=node", "prometheus_server=:2112",
				"vip_nodename=fieldRef:spec.nodeName", "k8s_config_file=/etc/kubernetes/admin.conf"}, common[1:]...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, envOf(t, tt.args...)); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		})
	}
}

// TestManifestEnvIsWhatTheManagerReads feeds a manifest's literal
// environment to the manager's settings and checks what the manager sees.
func TestManifestEnvIsWhatTheManagerReads(t *testing.T) {
	env := map[string]string{}
	for _, kv := range envOf(t, "manifest", "pod", "--interface=eth1", "--service-election=false", "--lease-duration=9", "--renew-deadline=6", "--retry-period=2", "--arp=false") {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(v, "fieldRef:") {
			env[k] = v
		}
	}
	o := &managerOptions{}
	table := managerSettings(o)
	fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
	register(fs, table)
	if err := applyEnv(fs, table, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	got := []any{o.services, o.perService, o.iface, o.leaseDuration, o.renewDeadline, o.retryPeriod, o.arp, o.prometheus, o.kubeconfig}
	want := []any{true, false, "eth1", 9 * time.Second, 6 * time.Second, 2 * time.Second, false, ":2112", "/etc/kubernetes/admin.conf"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("manager options (-want +got):\n%s", diff)
	}
}

func TestManifestHostAccess(t *testing.T) {
	for _, tt := range []struct {
		kind  string
		build func(*manifestOptions) ([]kruntime.Object, error)
	}{{"pod", podManifest}, {"daemonset", daemonSetManifest}} {
		kind := tt.kind
		t.Run(kind, func(t *testing.T) {
			objs, err := tt.build(defaultManifestOptions())
			if err != nil {
				t.Fatal(err)
			}
			spec := podSpecOf(t, objs)
			c := spec.Containers[0]
			got := map[string]any{
				"hostNetwork": spec.HostNetwork,
				"args":        c.Args,
				"add":         c.SecurityContext.Capabilities.Add,
				"drop":        c.SecurityContext.Capabilities.Drop,
				"privileged":  c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged,
				"probe":       c.LivenessProbe.HTTPGet.Path + ":" + c.LivenessProbe.HTTPGet.Port.String(),
				"state":       volumeOf(spec, "/run/vigil"),
			}
			want := map[string]any{
				"hostNetwork": true,
				"args":        []string{"manager"},
				"add":         []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				"drop":        []corev1.Capability{"ALL"},
				"privileged":  false,
				"probe":       "/healthz:2112",
				"state":       "hostPath:/run/vigil:DirectoryOrCreate:rw",
			}
			if kind == "pod" {
				got["kubeconfig"] = volumeOf(spec, "/etc/kubernetes/admin.conf")
				want["kubeconfig"] = "hostPath:/etc/kubernetes/admin.conf:File:ro"
			} else {
				got["tolerations"] = spec.Tolerations
				want["tolerations"] = []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
				got["nodeSelector"] = spec.NodeSelector
				want["nodeSelector"] = map[string]string{"kubernetes.io/os": "linux"}
				got["serviceAccountName"] = spec.ServiceAccountName
				want["serviceAccountName"] = "vigil"
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("pod spec (-want +got):\n%s", diff)
			}
		})
	}
}

func defaultManifestOptions() *manifestOptions {
	o := &manifestOptions{}
	addManifestFlags(pflag.NewFlagSet("manifest", pflag.ContinueOnError), o)
	return o
}

func podSpecOf(t *testing.T, objs []kruntime.Object) corev1.PodSpec {
	t.Helper()
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Pod:
			return o.Spec
		case *appsv1.DaemonSet:
			return o.Spec.Template.Spec
		}
	}
	t.Fatal("no pod spec")
	return corev1.PodSpec{}
}

// volumeOf describes the hostPath volume mounted at path.
func volumeOf(spec corev1.PodSpec, path string) string {
	for _, m := range spec.Containers[0].VolumeMounts {
		if m.MountPath != path {
			continue
		}
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.HostPath != nil && v.HostPath.Type != nil {
				return fmt.Sprintf("hostPath:%s:%s:%s", v.HostPath.Path, *v.HostPath.Type, mode)
			}
		}
	}
	return "missing"
}

func TestClusterRoleRules(t *testing.T) {
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
		{APIGroups: []string{"vigil.io"}, Resources: []string{"ippools"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"vigil.io"}, Resources: []string{"ippools/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"kubevip"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
	}
	want = append(want, crdconfig.ClusterRoleRules()...)
	// MetalLB's objects and legacy ConfigMap: read only.
	want = append(want,
		rbacv1.PolicyRule{APIGroups: []string{"metallb.io"}, Resources: []string{"ipaddresspools", "communities", "bfdprofiles", "bgppeers", "bgpadvertisements", "l2advertisements"}, Verbs: []string{"list", "watch"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"config"}, Verbs: []string{"list", "watch"}},
		rbacv1.PolicyRule{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, Verbs: []string{"list"}})
	if diff := cmp.Diff(want, ClusterRoleRules()); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	for _, r := range ClusterRoleRules() {
		// delete only on leases: the Leases of deleted Services (issue 11).
		if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || (slices.Contains(r.Verbs, "delete") && !slices.Equal(r.Resources, []string{"leases"})) {
			t.Errorf("rule %+v is broader than needed", r)
		}
	}
}

func TestEnvName(t *testing.T) {
	tests := []struct {
		flag, want, wantErr string
	}{
		{flag: "interface", want: "vip_interface"},
		{flag: "service-election", want: "svc_election"},
		{flag: "upnp", want: "enableUPNP"},
		{flag: "lease-duration", want: "vip_leaseduration"},
		{flag: "node-name", want: "vip_nodename"},
		{flag: "kubeconfig", want: "k8s_config_file"},
		{flag: "no-such-flag", wantErr: "no manager flag --no-such-flag"},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			got, err := envName(tt.flag)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff([]string{tt.want, tt.wantErr}, []string{got, gotErr}); diff != "" {
				t.Errorf("envName (-want +got):\n%s", diff)
			}
		})
	}
}

func TestManifestValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*manifestOptions)
		wantErr string
	}{
		{name: "defaults", change: func(*manifestOptions) {}},
		{name: "empty image", change: func(o *manifestOptions) { o.image = " " }, wantErr: "--image must not be empty"},
		{name: "bad namespace", change: func(o *manifestOptions) { o.namespace = "Kube_System" }, wantErr: `--namespace "Kube_System"`},
		{name: "renew deadline not below lease duration", change: func(o *manifestOptions) { o.renewDeadline = 5 }, wantErr: "vip_renewdeadline (5s) must be shorter than vip_leaseduration (5s)"},
		{name: "retry period not below renew deadline", change: func(o *manifestOptions) { o.retryPeriod = 3 }, wantErr: "vip_retryperiod (3s) must be shorter"},
		{name: "zero lease duration", change: func(o *manifestOptions) { o.leaseDuration = 0 }, wantErr: "must be positive"},
		{name: "node election mode", change: func(o *manifestOptions) { o.electionMode = "node" }},
		{name: "unknown election mode", change: func(o *manifestOptions) { o.electionMode = "gossip" }, wantErr: `--election-mode="gossip": service or node`},
		{name: "node election mode with one shared lease", change: func(o *manifestOptions) { o.electionMode, o.serviceElection = "node", false }, wantErr: "vigil_election_mode=node needs svc_election=true"},
		{name: "node election mode with too short a lease", change: func(o *manifestOptions) { o.electionMode, o.leaseDuration = "node", 4 }, wantErr: "vip_leaseduration=4s is too short for node mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaultManifestOptions()
			tt.change(o)
			err := o.validate()
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if (tt.wantErr == "" && err != nil) || !strings.Contains(gotErr, tt.wantErr) {
				t.Fatalf("validate error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// An invalid --election-mode stops both manifests with an error naming
// the flag; the flag's default is the manager's.
func TestManifestElectionModeFlag(t *testing.T) {
	if got, want := defaultManifestOptions().electionMode, managerDefaults().election.mode; got != want {
		t.Errorf("--election-mode defaults to %q, the manager to %q", got, want)
	}
	for _, kind := range []string{"pod", "daemonset"} {
		cmd := newRoot(program{})
		cmd.SetArgs([]string{"manifest", kind, "--election-mode=gossip"})
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--election-mode") {
			t.Errorf("manifest %s --election-mode=gossip: error %v, want one naming --election-mode", kind, err)
		}
	}
}

func TestDefaultImage(t *testing.T) {
	saved := Version
	t.Cleanup(func() { Version = saved })
	for version, want := range map[string]string{
		"dev":    "ghcr.io/vigil-lb/vigil:latest",
		"":       "ghcr.io/vigil-lb/vigil:latest",
		"v0.3.1": "ghcr.io/vigil-lb/vigil:v0.3.1",
	} {
		Version = version
		if diff := cmp.Diff(want, defaultImage()); diff != "" {
			t.Errorf("Version %q (-want +got):\n%s", version, diff)
		}
	}
}

// Markers around the generated settings table in docs/configuration.md.
const (
	docPath     = "docs/configuration.md"
	docBegin    = "<!-- BEGIN GENERATED: manager settings (UPDATE_MANIFESTS=1 go test ./pkg/cli -run UpToDate) -->\n"
	docEnd      = "<!-- END GENERATED: manager settings -->\n"
	hostDefault = "the host name"
)

// settingsMarkdown renders the manager's settings as a Markdown table.
func settingsMarkdown() string {
	table := managerSettings(&managerOptions{})
	fs := pflag.NewFlagSet("doc", pflag.ContinueOnError)
	register(fs, table)
	var b strings.Builder
	b.WriteString("| environment | flag | default | meaning |\n| --- | --- | --- | --- |\n")
	for _, s := range table {
		env := make([]string, len(s.env))
		for i, e := range s.env {
			env[i] = "`" + e + "`"
		}
		def := "`" + fs.Lookup(s.flag).DefValue + "`"
		switch {
		case s.flag == "node-name":
			def = hostDefault
		case def == "``":
			def = "(empty)"
		}
		usage := strings.NewReplacer("<", `\<`, ">", `\>`, "|", `\|`).Replace(s.usage)
		fmt.Fprintf(&b, "| %s | `--%s` | %s | %s |\n", strings.Join(env, ", "), s.flag, def, usage)
	}
	return b.String()
}

func TestConfigurationDocUpToDate(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), docPath))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	before, rest, ok1 := strings.Cut(doc, docBegin)
	_, after, ok2 := strings.Cut(rest, docEnd)
	if !ok1 || !ok2 {
		t.Fatalf("%s lacks the markers %q and %q", docPath, docBegin, docEnd)
	}
	checkGenerated(t, docPath, before+docBegin+settingsMarkdown()+docEnd+after)
}

func TestConfigurationDocNamesEveryVariable(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), docPath))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range envNames(managerSettings(&managerOptions{})) {
		if !bytes.Contains(raw, []byte("`"+e+"`")) {
			t.Errorf("%s does not mention `%s`", docPath, e)
		}
	}
}

// vigil manifest --bgp renders the ECMP configuration: no election, no ARP
// (unless asked for), BGP on with the peers; bad BGP flags are refused.
func TestManifestBGP(t *testing.T) {
	out := run(t, "manifest", "daemonset", "--bgp", "--bgp-peers", "198.18.0.254:65001")
	for _, want := range []string{"name: svc_election\n          value: \"false\"", "name: vip_arp\n          value: \"false\"",
		"name: bgp_enable\n          value: \"true\"", "name: bgp_peers\n          value: 198.18.0.254:65001"} {
		if !strings.Contains(out, want) {
			t.Errorf("manifest lacks %q", want)
		}
	}
	out = run(t, "manifest", "daemonset", "--bgp", "--service-election=true")
	if !strings.Contains(out, "name: svc_election\n          value: \"true\"") {
		t.Error("--service-election=true given with --bgp was overridden")
	}
	for _, args := range [][]string{{"--bgp", "--bgp-as", "0"}, {"--bgp", "--bgp-peers", "bogus"}} {
		cmd := newRoot(program{})
		cmd.SetArgs(append([]string{"manifest", "daemonset"}, args...))
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.Execute(); err == nil {
			t.Errorf("manifest %v: no error", args)
		}
	}
}

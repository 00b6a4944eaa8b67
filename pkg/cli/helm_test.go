package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/vigil-lb/vigil/pkg/crdconfig"
)

// helmEnv names the helm binary the chart tests run; unset, they use the
// one testing/helm/build.sh caches (make test builds it first).
const helmEnv = "VIGIL_HELM"

// helmBinary returns the helm binary, or skips when none was built here.
func helmBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv(helmEnv); b != "" {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("%s=%s: %v", helmEnv, b, err)
		}
		return b
	}
	out, err := exec.Command("bash", filepath.Join(repoRoot(t), "testing", "helm", "build.sh"), "--path").Output()
	if err != nil {
		t.Fatalf("testing/helm/build.sh --path: %v", err)
	}
	b := strings.TrimSpace(string(out))
	if _, err := os.Stat(b); err != nil {
		t.Skipf("no helm binary at %s: build it with `bash testing/helm/build.sh` (make test does) or set %s", b, helmEnv)
	}
	return b
}

// helm runs the helm binary on the chart with values (as a values file)
// and returns its output.
func helm(t *testing.T, bin string, values map[string]any, args ...string) (string, error) {
	t.Helper()
	raw, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	args = append(args, filepath.Join(repoRoot(t), "charts", "vigil"), "--values", file)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return out.String(), nil
}

// parseObjects parses a YAML stream into objects keyed by kind/name.
func parseObjects(t *testing.T, stream string) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	for _, doc := range strings.Split("\n"+stream, "\n---") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("parse: %v\n%s", err, doc)
		}
		if m == nil {
			continue // only comments
		}
		meta, _ := m["metadata"].(map[string]any)
		key := fmt.Sprintf("%v/%v", m["kind"], meta["name"])
		if _, dup := objs[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		objs[key] = m
	}
	return objs
}

// chartCase is one set of chart values and the `vigil manifest daemonset`
// flags for the same settings.
type chartCase struct {
	name      string
	namespace string
	values    map[string]any
	flags     []string
}

func chartCases() []chartCase {
	const tag = "v9.9.9"
	image := map[string]any{"tag": tag}
	imageFlag := "--image=ghcr.io/vigil-lb/vigil:" + tag
	return []chartCase{
		{name: "defaults", namespace: "kube-system", values: map[string]any{"image": image}, flags: []string{imageFlag}},
		{
			name: "every L2 setting", namespace: "vigil-system",
			values: map[string]any{
				"image": image, "interface": "eth1", "serviceElection": false, "arp": false, "upnp": true, "allocator": true,
				"leaseDuration": 15, "renewDeadline": 10, "retryPeriod": 2,
			},
			flags: []string{imageFlag, "--namespace=vigil-system", "--interface=eth1", "--service-election=false", "--arp=false",
				"--upnp", "--allocator", "--lease-duration=15", "--renew-deadline=10", "--retry-period=2"},
		},
		{
			name: "bgp defaults election and arp off", namespace: "kube-system",
			values: map[string]any{"image": image, "bgp": map[string]any{"enabled": true, "as": 65010, "peers": "192.168.0.1:65000::false"}},
			flags:  []string{imageFlag, "--bgp", "--bgp-as=65010", "--bgp-peers=192.168.0.1:65000::false"},
		},
		{
			name: "bgp with a 4-byte AS", namespace: "kube-system",
			values: map[string]any{"image": image, "bgp": map[string]any{"enabled": true, "as": 4200000000}},
			flags:  []string{imageFlag, "--bgp", "--bgp-as=4200000000"},
		},
		{
			name: "bgp with arp kept", namespace: "kube-system",
			values: map[string]any{"image": image, "arp": true, "bgp": map[string]any{"enabled": true}},
			flags:  []string{imageFlag, "--bgp", "--arp=true"},
		},
		{
			name: "election mode service is not written", namespace: "kube-system",
			values: map[string]any{"image": image, "electionMode": "service"},
			flags:  []string{imageFlag, "--election-mode=service"},
		},
		{
			name: "election mode node", namespace: "kube-system",
			values: map[string]any{"image": image, "electionMode": "node"},
			flags:  []string{imageFlag, "--election-mode=node"},
		},
		{
			name: "members", namespace: "kube-system",
			values: map[string]any{"image": image, "members": map[string]any{"enabled": true}},
			flags:  []string{imageFlag, "--members"},
		},
		{
			name: "endpoints", namespace: "kube-system",
			values: map[string]any{"image": image, "endpoints": true},
			flags:  []string{imageFlag, "--endpoints"},
		},
		{
			name: "node labeling", namespace: "kube-system",
			values: map[string]any{"image": image, "nodeLabeling": true},
			flags:  []string{imageFlag, "--node-labeling"},
		},
		{
			name: "every optional setting", namespace: "vigil-system",
			values: map[string]any{
				"image": image, "interface": "eth1", "electionMode": "node", "upnp": true, "allocator": true,
				"leaseDuration": 9, "renewDeadline": 6, "retryPeriod": 2,
				"bgp":             map[string]any{"enabled": true, "as": 65010, "peers": "192.168.0.1:65000::false"},
				"serviceElection": true, "arp": true,
				"endpoints": true, "nodeLabeling": true, "members": map[string]any{"enabled": true},
			},
			flags: []string{imageFlag, "--namespace=vigil-system", "--interface=eth1", "--election-mode=node", "--upnp", "--allocator",
				"--lease-duration=9", "--renew-deadline=6", "--retry-period=2",
				"--bgp", "--bgp-as=65010", "--bgp-peers=192.168.0.1:65000::false", "--service-election=true", "--arp=true",
				"--endpoints", "--node-labeling", "--members"},
		},
	}
}

// TestChartMatchesManifest renders the chart and `vigil manifest daemonset`
// for the same settings and compares the objects.
func TestChartMatchesManifest(t *testing.T) {
	bin := helmBinary(t)
	for _, c := range chartCases() {
		t.Run(c.name, func(t *testing.T) {
			got, err := helm(t, bin, c.values, "template", "vigil", "--namespace", c.namespace)
			if err != nil {
				t.Fatal(err)
			}
			want := run(t, append([]string{"manifest", "daemonset", "--namespace=" + c.namespace}, c.flags...)...)
			if diff := cmp.Diff(parseObjects(t, want), parseObjects(t, got)); diff != "" {
				t.Errorf("chart differs from vigil manifest daemonset %s (-manifest +chart):\n%s", strings.Join(c.flags, " "), diff)
			}
		})
	}
}

// TestChartObjects renders IPPools, BGPPeers and BGPAdvertisements from
// values, beside exactly the manifest's objects.
func TestChartObjects(t *testing.T) {
	bin := helmBinary(t)
	pool := map[string]any{"addresses": []any{"192.168.1.240-192.168.1.250"}, "autoAssign": true}
	peer := map[string]any{"myASN": float64(65000), "peerAddress": "192.168.1.1", "peerASN": float64(64512)} // yaml.Unmarshal reads numbers as float64
	adv := map[string]any{"communities": []any{"65000:100"}}
	values := map[string]any{"image": map[string]any{"tag": "v1"}, "pools": []any{map[string]any{"name": "lan", "spec": pool}},
		"bgp": map[string]any{"enabled": true, "peerObjects": []any{map[string]any{"name": "tor", "spec": peer}},
			"advertisements": []any{map[string]any{"name": "all", "spec": adv}}}}
	out, err := helm(t, bin, values, "template", "vigil", "--namespace", "kube-system")
	if err != nil {
		t.Fatal(err)
	}
	got := parseObjects(t, out)
	manifest := parseObjects(t, run(t, "manifest", "daemonset", "--image=ghcr.io/vigil-lb/vigil:v1", "--bgp"))
	for key := range manifest {
		if _, ok := got[key]; !ok {
			t.Errorf("chart misses %s", key)
		}
		delete(got, key)
	}
	object := func(kind, name string, spec map[string]any) map[string]any {
		return map[string]any{"apiVersion": "vigil.io/v1alpha1", "kind": kind, "spec": spec,
			"metadata": map[string]any{"name": name, "labels": map[string]any{nameLabel: manifestName}}}
	}
	want := map[string]map[string]any{
		"IPPool/lan":           object("IPPool", "lan", pool),
		"BGPPeer/tor":          object("BGPPeer", "tor", peer),
		"BGPAdvertisement/all": object("BGPAdvertisement", "all", adv),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects from values (-want +got):\n%s", diff)
	}
}

// TestChartRejectsBadValues: values the agents would refuse, and values
// the chart does not know (values.schema.json), stop the render with one
// message naming them.
func TestChartRejectsBadValues(t *testing.T) {
	bin := helmBinary(t)
	for name, c := range map[string]struct {
		values map[string]any
		want   string
	}{
		"renew deadline not below lease duration": {map[string]any{"leaseDuration": 3, "renewDeadline": 3}, "renewDeadline (3) < leaseDuration (3)"},
		"zero retry period":                       {map[string]any{"retryPeriod": 0}, "/retryPeriod': minimum: got 0, want 1"},
		"pool without name":                       {map[string]any{"pools": []any{map[string]any{"spec": map[string]any{}}}}, "every IPPool needs a name"},
		"peer without spec":                       {map[string]any{"bgp": map[string]any{"peerObjects": []any{map[string]any{"name": "tor"}}}}, "BGPPeer tor needs a spec"},
		"misspelt value":                          {map[string]any{"intreface": "eth0"}, "additional properties 'intreface' not allowed"},
		"lease duration not a number":             {map[string]any{"leaseDuration": "5s"}, "/leaseDuration': got string, want integer"},
		"bgp AS not a number":                     {map[string]any{"bgp": map[string]any{"as": "AS65000"}}, "/bgp/as"},
		"unknown election mode":                   {map[string]any{"electionMode": "gossip"}, "/electionMode'"},
		"node mode with one shared Lease":         {map[string]any{"electionMode": "node", "serviceElection": false}, "electionMode=node needs serviceElection=true"},
		"node mode under BGP's default":           {map[string]any{"electionMode": "node", "bgp": map[string]any{"enabled": true}}, "electionMode=node needs serviceElection=true"},
		"node mode with too short a lease":        {map[string]any{"electionMode": "node", "leaseDuration": 4}, "electionMode=node needs leaseDuration - min(leaseDuration/3, retryPeriod) of at least 3.7 seconds"},
		"members not an object":                   {map[string]any{"members": true}, "/members'"},
		"members misspelt":                        {map[string]any{"members": map[string]any{"enable": true}}, "additional properties 'enable' not allowed"},
		"endpoints not a boolean":                 {map[string]any{"endpoints": "yes"}, "/endpoints': got string, want boolean"},
		"node labeling not a boolean":             {map[string]any{"nodeLabeling": 1}, "/nodeLabeling'"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := helm(t, bin, c.values, "template", "vigil")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestChartLints runs helm lint --strict with the default values and each
// case's.
func TestChartLints(t *testing.T) {
	bin := helmBinary(t)
	for _, c := range append(chartCases(), chartCase{name: "no values", values: map[string]any{}}) {
		t.Run(c.name, func(t *testing.T) {
			if _, err := helm(t, bin, c.values, "lint", "--strict"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestChartRulesUpToDate: the chart's RBAC rules (files/) are the ones
// the manifests grant.
func TestChartRulesUpToDate(t *testing.T) {
	for path, rules := range map[string]any{
		"charts/vigil/files/clusterrole-rules.yaml":   ClusterRoleRules(),
		"charts/vigil/files/role-rules.yaml":          crdconfig.SecretRoleRules(),
		"charts/vigil/files/endpoints-rules.yaml":     manifestKubevip{endpoints: true}.rules(),
		"charts/vigil/files/node-labeling-rules.yaml": manifestKubevip{nodeLabels: true}.rules(),
	} {
		out, err := yaml.Marshal(rules)
		if err != nil {
			t.Fatal(err)
		}
		checkGenerated(t, path, "# Generated from pkg/cli (UPDATE_MANIFESTS=1 go test ./pkg/cli -run UpToDate).\n"+string(out))
	}
}

// TestChartNodeLeaseMinimum: the chart refuses node mode's short leases
// with the manager's dead man's switch (the template repeats it in ms).
func TestChartNodeLeaseMinimum(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "charts", "vigil", "templates", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("lt (sub $lease $beat) %d", deadMansSwitch.Milliseconds())
	if !strings.Contains(string(raw), want) {
		t.Errorf("templates/daemonset.yaml lacks %q: the chart's node-mode lease minimum differs from deadMansSwitch", want)
	}
}

// TestChartCRDsUpToDate: the chart's crds/ are the CRDs vigil ships.
func TestChartCRDsUpToDate(t *testing.T) {
	ippool, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", "ippool-crd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	checkGenerated(t, "charts/vigil/crds/ippool-crd.yaml", string(ippool))
	checkGenerated(t, "charts/vigil/crds/bgp-crds.yaml", run(t, "manifest", "crds"))
}

//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/yaml"

	"github.com/vigil-lb/vigil/pkg/crdconfig"
	"github.com/vigil-lb/vigil/pkg/lbconfig"
	"github.com/vigil-lb/vigil/testing/lab"
)

// bgpCRDs applies manifests/bgp-crds.yaml and waits until the four CRDs are
// established; it returns an admin dynamic client.
func bgpCRDs(t *testing.T, ctx context.Context) dynamic.Interface {
	t.Helper()
	lab.Require(t, cp)
	if err := cp.ApplyManifest(ctx, "manifests/bgp-crds.yaml"); err != nil {
		t.Fatal(err)
	}
	for _, crd := range []string{"bgppeers.vigil.io", "bgpadvertisements.vigil.io", "bfdprofiles.vigil.io", "l2advertisements.vigil.io"} {
		if out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", cp.AdminKubeconfig,
			"wait", "--for=condition=established", "--timeout=30s", "crd/"+crd).CombinedOutput(); err != nil {
			t.Fatalf("%s not established: %v\n%s", crd, err, out)
		}
	}
	cfg, err := lab.RESTConfig(cp.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

func vigilGVR(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "vigil.io", Version: "v1alpha1", Resource: resource}
}

// object reads one YAML object.
func object(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return &unstructured.Unstructured{Object: m}
}

// resourceOf maps the Kinds to their resources.
var resourceOf = map[string]string{
	"BGPPeer": "bgppeers", "BGPAdvertisement": "bgpadvertisements", "BFDProfile": "bfdprofiles", "L2Advertisement": "l2advertisements",
}

// create creates obj and deletes it when the test ends.
func create(t *testing.T, ctx context.Context, dyn dynamic.Interface, obj *unstructured.Unstructured) error {
	t.Helper()
	gvr := vigilGVR(resourceOf[obj.GetKind()])
	if _, err := dyn.Resource(gvr).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return err
	}
	t.Cleanup(func() { _ = dyn.Resource(gvr).Delete(context.Background(), obj.GetName(), metav1.DeleteOptions{}) })
	return nil
}

// The API server refuses bad BGP objects, and the message names the field.
func TestBGPCRDValidation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dyn := bgpCRDs(t, ctx)
	for _, tt := range []struct {
		name, doc, want string
	}{
		{"peerasn", peerDoc("peerASN: 0"), "spec.peerASN"},
		{"peerasn-big", peerDoc("peerASN: 4294967296"), "spec.peerASN"},
		{"routerid-v6", peerDoc("routerID: fd00:1ab::1"), "routerID must be an IPv4 address"},
		{"routerid-junk", peerDoc("routerID: router-1"), "routerID must be an IPv4 address"},
		{"address", peerDoc("peerAddress: not-an-ip"), "peerAddress must be an IP address"},
		{"holdtime", peerDoc("holdTime: 1s"), "holdTime must be 0 or 3s-65535s"},
		{"keepalive", peerDoc("holdTime: 9s\n  keepaliveTime: 10s"), "keepaliveTime must not be longer than holdTime"},
		{"connecttime", peerDoc("connectTime: 1500ms"), "connectTime must be a whole number of seconds"},
		{"multihop-ibgp", peerDoc("peerASN: 64512\n  ebgpMultiHop: true"), "ebgpMultiHop"},
		{"password-twice", peerDoc("password: a\n  passwordSecret: {name: s}"), "password and passwordSecret are mutually exclusive"},
		{"metallb-only", peerDoc("dynamicASN: external"), "not supported by vigil"},
		{"selector", peerDoc("nodeSelectors:\n  - matchExpressions: [{key: rack, operator: In}]"), "values: must be non-empty for In"},
		{"bfd-multiplier", "apiVersion: vigil.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: cel-bfd}\nspec: {detectMultiplier: 1}\n", "spec.detectMultiplier"},
		{"bfd-interval", "apiVersion: vigil.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: cel-bfd2}\nspec: {receiveInterval: 5}\n", "spec.receiveInterval"},
		{"bfd-echo", "apiVersion: vigil.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: cel-bfd3}\nspec: {echoMode: true}\n", "echoMode"},
		{"community", "apiVersion: vigil.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: cel-adv}\nspec: {communities: [\"65536:1\"]}\n", "communities"},
		{"aggregation", "apiVersion: vigil.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: cel-adv2}\nspec: {aggregationLength: 33}\n", "spec.aggregationLength"},
		{"aggregation-v6", "apiVersion: vigil.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: cel-adv3}\nspec: {aggregationLengthV6: 0}\n", "spec.aggregationLengthV6"},
		{"l2-interface", "apiVersion: vigil.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: cel-l2}\nspec: {interfaces: [\"eth0/1\"]}\n", "interfaces"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(tt.doc, "%s", tt.name, 1)
			err := create(t, ctx, dyn, object(t, doc))
			if err == nil {
				t.Fatalf("created:\n%s", doc)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
			t.Logf("refused: %v", err)
		})
	}
	// The same objects, valid, are accepted (the rules do not refuse everything).
	for _, doc := range []string{
		peerDoc("holdTime: 9s\n  keepaliveTime: 3s\n  routerID: 198.18.0.10\n  peerPort: 1179"),
		peerDoc("peerAddress: fd00:1ab::1\n  holdTime: 0s\n  passwordSecret: {name: md5, namespace: kube-system}\n  nodeSelectors:\n  - matchLabels: {rack: \"1\"}\n    matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [n1]}]"),
		"apiVersion: vigil.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: cel-ok-bfd}\nspec: {receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}\n",
		"apiVersion: vigil.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: cel-ok-adv}\nspec: {communities: [\"65535:65535\", \"large:4294967295:0:1\"], localPref: 200, aggregationLength: 24}\n",
		"apiVersion: vigil.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: cel-ok-l2}\nspec: {interfaces: [eth0, bond0.100]}\n",
	} {
		obj := object(t, strings.Replace(doc, "%s", "ok-"+strings.ToLower(time.Now().Format("150405.000000000")), 1))
		obj.SetName(strings.ReplaceAll(obj.GetName(), ".", "-"))
		if err := create(t, ctx, dyn, obj); err != nil {
			t.Errorf("valid object refused: %v\n%s", err, doc)
		}
	}
}

// peerDoc is a valid BGPPeer with some spec fields replaced or added
// (extra: YAML lines indented by two spaces after the first).
func peerDoc(extra string) string {
	spec := map[string]any{"myASN": 64512, "peerASN": 65000, "peerAddress": "198.18.0.1"}
	var more map[string]any
	if err := yaml.Unmarshal([]byte(strings.ReplaceAll(extra, "\n  ", "\n")), &more); err != nil {
		panic(err)
	}
	for k, v := range more {
		spec[k] = v
	}
	out, err := yaml.Marshal(map[string]any{"apiVersion": "vigil.io/v1alpha1", "kind": "BGPPeer", "metadata": map[string]any{"name": "cel-%s"}, "spec": spec})
	if err != nil {
		panic(err)
	}
	return string(out)
}

// sourceIdentity creates a namespace (vigil's, for the password Secrets)
// and an identity holding exactly crdconfig's RBAC rules (plus Events);
// it returns the namespace and that identity's clients.
func sourceIdentity(t *testing.T, ctx context.Context, admin kubernetes.Interface) (string, kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	ns, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bgpcrd-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + ns.Name + ":vigil"
	name := "vigil-" + ns.Name
	rules := append(crdconfig.ClusterRoleRules(), rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}})
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	for _, create := range []func() error{
		func() error {
			_, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}, Subjects: subjects}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := admin.RbacV1().Roles(ns.Name).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "vigil"}, Rules: crdconfig.SecretRoleRules()}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := admin.RbacV1().RoleBindings(ns.Name).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "vigil"},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "vigil"}, Subjects: subjects}, metav1.CreateOptions{})
			return err
		},
	} {
		if err := create(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		bg := context.Background()
		_ = admin.RbacV1().ClusterRoleBindings().Delete(bg, name, metav1.DeleteOptions{})
		_ = admin.RbacV1().ClusterRoles().Delete(bg, name, metav1.DeleteOptions{})
		_ = admin.CoreV1().Namespaces().Delete(bg, ns.Name, metav1.DeleteOptions{})
	})
	kc, err := cp.Kubeconfig("bgpcrd-"+ns.Name, user)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := lab.RESTConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name, cs, dyn
}

// The source, run in-process as an identity with only its RBAC rules,
// turns a set of objects into the expected model; a BGPPeer whose password
// Secret is missing is left out with Valid=False and a Warning Event, and
// is used once the Secret exists.
func TestBGPCRDSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adminDyn := bgpCRDs(t, ctx)
	admin, err := cp.Client()
	if err != nil {
		t.Fatal(err)
	}
	ns, cs, dyn := sourceIdentity(t, ctx, admin)
	secret := func(name, pw string) {
		t.Helper()
		if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeBasicAuth,
			StringData: map[string]string{"password": pw}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	secret("tor1-md5", "s3cret")
	for _, doc := range []string{
		"apiVersion: vigil.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: src-fast}\nspec: {receiveInterval: 100, transmitInterval: 100}\n",
		"apiVersion: vigil.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: src-tor1}\nspec:\n  myASN: 64512\n  peerASN: 65000\n  peerAddress: 198.18.0.1\n" +
			"  holdTime: 9s\n  bfdProfile: src-fast\n  passwordSecret: {name: tor1-md5}\n  nodeSelectors: [{matchLabels: {rack: \"1\"}}]\n",
		"apiVersion: vigil.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: src-tor2}\nspec: {myASN: 64512, peerASN: 65001, peerAddress: \"fd00:1ab::1\", ebgpMultiHop: true, connectTime: 5s}\n",
		"apiVersion: vigil.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: src-tor3}\nspec: {myASN: 64512, peerASN: 65002, peerAddress: 198.18.0.3, passwordSecret: {name: tor3-md5}}\n",
		"apiVersion: vigil.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: src-routed}\nspec: {ipAddressPools: [routed], peers: [src-tor1], localPref: 150, communities: [\"65000:100\"], aggregationLengthV6: 120}\n",
		"apiVersion: vigil.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: src-lan}\nspec: {ipAddressPoolSelectors: [{matchLabels: {l2: \"yes\"}}], interfaces: [eth0]}\n",
	} {
		if err := create(t, ctx, adminDyn, object(t, doc)); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
	}

	changed := make(chan struct{}, 1)
	rec, stopRec := apiRecorder(ctx, cs)
	defer stopRec()
	src := crdconfig.New(cs.Discovery(), dyn, cs.CoreV1().Secrets(ns), crdconfig.Options{
		Namespace: ns, Interval: time.Second, Recorder: rec,
		OnChange: func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
	})
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); src.Run(sctx) }()
	defer func() { stop(); <-done }()

	awaitConfig(t, ctx, src, changed, func(c lbconfig.Config) bool { return len(c.Peers) == 2 })
	ms := time.Millisecond
	want := lbconfig.Config{
		Peers: []lbconfig.Peer{
			{Name: "src-tor1", Address: netip.MustParseAddr("198.18.0.1"), Port: 179, ASN: 65000, MyASN: 64512, Password: "s3cret",
				HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, BFD: &lbconfig.BFD{ReceiveInterval: 100 * ms, TransmitInterval: 100 * ms, DetectMultiplier: 3},
				Nodes: []*lbconfig.Selector{{MatchLabels: map[string]string{"rack": "1"}}}},
			{Name: "src-tor2", Address: netip.MustParseAddr("fd00:1ab::1"), Port: 179, ASN: 65001, MyASN: 64512, EBGPMultiHop: true, ConnectTime: 5 * time.Second},
		},
		BGPAdvertisements: []lbconfig.BGPAdvertisement{{Name: "src-routed", Pools: []string{"routed"}, Peers: []string{"src-tor1"}, LocalPref: 150,
			Communities: []lbconfig.Community{{Value: 65000<<16 | 100}}, AggregationLength: 32, AggregationLengthV6: 120}},
		L2Advertisements: []lbconfig.L2Advertisement{{Name: "src-lan", PoolSelectors: []*lbconfig.Selector{{MatchLabels: map[string]string{"l2": "yes"}}}, Interfaces: []string{"eth0"}}},
	}
	if diff := cmp.Diff(want, onlyPrefixed(src.Config(), "src-"), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("model (-want +got):\n%s", diff)
	}

	c := awaitValid(t, ctx, adminDyn, "src-tor3", metav1.ConditionFalse)
	if c.Reason != "InvalidPasswordSecret" || !strings.Contains(c.Message, ns+"/tor3-md5 not found") {
		t.Errorf("src-tor3 condition %+v", c)
	}
	awaitValid(t, ctx, adminDyn, "src-tor1", metav1.ConditionTrue)
	ev := awaitEvent(t, ctx, admin, "src-tor3", "InvalidPasswordSecret")
	t.Logf("event: %s %s: %s", ev.Type, ev.Reason, ev.Message)

	secret("tor3-md5", "an0ther")
	awaitConfig(t, ctx, src, changed, func(c lbconfig.Config) bool { return len(onlyPrefixed(c, "src-").Peers) == 3 })
	awaitValid(t, ctx, adminDyn, "src-tor3", metav1.ConditionTrue)
}

// onlyPrefixed keeps the objects of this test (another test's may exist).
func onlyPrefixed(c lbconfig.Config, prefix string) lbconfig.Config {
	var out lbconfig.Config
	for _, p := range c.Peers {
		if strings.HasPrefix(p.Name, prefix) {
			out.Peers = append(out.Peers, p)
		}
	}
	for _, a := range c.BGPAdvertisements {
		if strings.HasPrefix(a.Name, prefix) {
			out.BGPAdvertisements = append(out.BGPAdvertisements, a)
		}
	}
	for _, a := range c.L2Advertisements {
		if strings.HasPrefix(a.Name, prefix) {
			out.L2Advertisements = append(out.L2Advertisements, a)
		}
	}
	return out
}

// apiRecorder records Events to the API server.
func apiRecorder(ctx context.Context, cs kubernetes.Interface) (record.EventRecorder, func()) {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vigil-bgpcrd-test"}), b.Shutdown
}

func awaitConfig(t *testing.T, ctx context.Context, src *crdconfig.Source, changed <-chan struct{}, cond func(lbconfig.Config) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !cond(src.Config()) {
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("model not reached: %+v", src.Config())
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

// awaitValid waits for a BGPPeer's Valid condition to have status.
func awaitValid(t *testing.T, ctx context.Context, dyn dynamic.Interface, name string, status metav1.ConditionStatus) *metav1.Condition {
	t.Helper()
	var got *metav1.Condition
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		u, err := dyn.Resource(crdconfig.BGPPeers).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		var st struct {
			Conditions []metav1.Condition `json:"conditions"`
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(map[string]any{"conditions": raw}, &st); err != nil {
			return false, err
		}
		got = meta.FindStatusCondition(st.Conditions, crdconfig.ConditionValid)
		return got != nil && got.Status == status, nil
	})
	if err != nil {
		t.Fatalf("BGPPeer %s: Valid=%s not reached (last %+v): %v", name, status, got, err)
	}
	return got
}

// awaitEvent waits for an Event about a BGPPeer (in the default namespace,
// where Events about cluster-scoped objects go).
func awaitEvent(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, reason string) corev1.Event {
	t.Helper()
	var found corev1.Event
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == reason && e.InvolvedObject.Kind == "BGPPeer" && e.Type == corev1.EventTypeWarning {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no Warning %s Event for BGPPeer %s: %v", reason, name, err)
	}
	return found
}

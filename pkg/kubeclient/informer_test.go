package kubeclient_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-lb/vigil/pkg/kubeclient"
	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
)

func lease(name string, labels map[string]string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", Labels: labels,
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "test"}}}}
}

// An informer lists through the tweak, stores transformed objects, indexes
// them by namespace, and runs and stops with its group.
func TestInformer(t *testing.T) {
	cs := kubeclienttest.Wrap(fake.NewClientset(lease("ours", map[string]string{"a": "b"}), lease("theirs", nil)))
	inf, err := kubeclient.NewInformer(cs.Leases("kube-system"), cs, &coordinationv1.Lease{}, kubeclient.InformerOptions{
		Tweak: func(o *metav1.ListOptions) { o.LabelSelector = "a=b" },
		Transform: func(obj any) (any, error) {
			obj.(*coordinationv1.Lease).ManagedFields = nil
			return obj, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var g kubeclient.Informers
	g.Add(inf)
	ctx, cancel := context.WithCancel(t.Context())
	g.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("not synced")
	}
	objs, err := inf.GetIndexer().ByIndex(cache.NamespaceIndex, "kube-system")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].(*coordinationv1.Lease).Name != "ours" || objs[0].(*coordinationv1.Lease).ManagedFields != nil {
		t.Fatalf("cached %+v, want the labelled Lease without managedFields", objs)
	}
	cancel()
	g.Shutdown()
	g.Start(t.Context().Done()) // after Shutdown: nothing
}

// A dynamic informer lists gvr's objects in its namespace.
func TestDynamicInformer(t *testing.T) {
	gvr := schema.GroupVersionResource{Group: "vigil.io", Version: "v1alpha1", Resource: "bgppeers"}
	obj := func(ns, name string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("vigil.io/v1alpha1")
		u.SetKind("BGPPeer")
		u.SetNamespace(ns)
		u.SetName(name)
		return u
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gvr: "BGPPeerList"}, obj("a", "p1"), obj("b", "p2"))
	inf := kubeclient.NewDynamicInformer(dyn, gvr, "a", nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("not synced")
	}
	if keys := inf.GetStore().ListKeys(); len(keys) != 1 || keys[0] != "a/p1" {
		t.Fatalf("cached %v, want a/p1", keys)
	}
}

// The binary links none of client-go's every-group packages: that is what
// this package is for (the image size budget).
func TestBinaryLinksNoClientset(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/vigil-lb/vigil/cmd/vigil").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	banned := []string{
		"k8s.io/client-go/kubernetes", "k8s.io/client-go/informers", "k8s.io/client-go/discovery",
		"k8s.io/client-go/applyconfigurations", "k8s.io/client-go/dynamic/dynamicinformer",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, b := range banned {
			if pkg == b || strings.HasPrefix(pkg, b+"/") {
				t.Errorf("cmd/vigil links %s", pkg)
			}
		}
	}
}

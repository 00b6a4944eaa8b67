package nodestatus_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vigil-lb/vigil/pkg/kubeclient/kubeclienttest"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

var since = time.Date(2026, 12, 1, 21, 40, 2, 700_000_000, time.FixedZone("CET", 3600))

func TestEncode(t *testing.T) {
	tests := []struct {
		name  string
		peers []nodestatus.Peer
		want  string
	}{
		{name: "none", want: `[]`},
		{
			name: "sorted by peer, since in whole UTC seconds, empty fields left out",
			peers: []nodestatus.Peer{
				{Peer: "fd00:1ab::fe", ASN: 65001, State: "active", LastError: "hold timer expired"},
				{Peer: "198.18.0.254", ASN: 65001, State: "established", Since: since, Prefixes: 2},
			},
			want: `[{"peer":"198.18.0.254","asn":65001,"state":"established","since":"2026-12-01T20:40:02Z","prefixes":2},` +
				`{"peer":"fd00:1ab::fe","asn":65001,"state":"active","prefixes":0,"lastError":"hold timer expired"}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := nodestatus.Encode(tt.peers)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Encode = %s\nwant     %s", got, tt.want)
			}
		})
	}
}

func nodeLease(name, managedBy, peers string) coordinationv1.Lease {
	l := coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name}}
	if managedBy != "" {
		l.Labels = map[string]string{nodestatus.ManagedByLabel: managedBy}
	}
	if peers != "-" {
		l.Annotations = map[string]string{nodestatus.PeersAnnotation: peers}
	}
	return l
}

func TestRead(t *testing.T) {
	up := `[{"peer":"198.18.0.254","asn":65001,"state":"established","since":"2026-12-01T20:40:02Z","prefixes":2}]`
	leases := []coordinationv1.Lease{
		nodeLease("vigil-node-node2", "vigil", up),
		nodeLease("vigil-node-node1", "vigil", `[]`),
		nodeLease("vigil-node-node3", "vigil", `{not json`),
		nodeLease("vigil-node-node4", "vigil", "-"),
		nodeLease("vigil-node-foreign", "someone-else", up),
		nodeLease("vigil-node-", "vigil", up),
		nodeLease("kubevip-web", "vigil", up),
		nodeLease("vigil-status", "vigil", up),
	}
	got := nodestatus.Read(leases)
	want := []nodestatus.Node{
		{Name: "node1", Peers: []nodestatus.Peer{}},
		{Name: "node2", Peers: []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65001, State: "established",
			Since: time.Date(2026, 12, 1, 20, 40, 2, 0, time.UTC), Prefixes: 2}}},
		{Name: "node3"},
	}
	errs := map[string]bool{"node3": true}
	for i := range got {
		if (got[i].Err != nil) != errs[got[i].Name] {
			t.Errorf("node %s: err = %v, want an error: %v", got[i].Name, got[i].Err, errs[got[i].Name])
		}
		got[i].Err = nil
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Read (-want +got):\n%s", diff)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(`[{"peer":"198.18.0.254","asn":65001,"state":"established","since":"2026-12-01T20:40:02Z","prefixes":2}]`)
	f.Add(`[]`)
	f.Add(`[{"since":"yesterday"}]`)
	f.Fuzz(func(t *testing.T, s string) {
		peers, err := nodestatus.Decode(s)
		if err != nil {
			return
		}
		// What decodes re-encodes, and decodes to the same sessions.
		v, err := nodestatus.Encode(peers)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", s, err)
		}
		again, err := nodestatus.Decode(v)
		if err != nil {
			t.Fatalf("Decode(%q): %v", v, err)
		}
		if len(again) != len(peers) {
			t.Fatalf("%d peers re-decoded as %d", len(peers), len(again))
		}
	})
}

// call is one API request the fake clientset saw: verb and the resource
// version an update was sent with.
type call struct{ Verb, ResourceVersion string }

func calls(cs *fake.Clientset) []call {
	var out []call
	for _, a := range cs.Actions() {
		c := call{Verb: a.GetVerb()}
		if u, ok := a.(k8stesting.UpdateAction); ok {
			c.ResourceVersion = u.GetObject().(*coordinationv1.Lease).ResourceVersion
		}
		out = append(out, c)
	}
	cs.ClearActions()
	return out
}

// Publish writes only what changed: create, then nothing for equal
// sessions, then one update at the resourceVersion it read.
func TestPublish(t *testing.T) {
	ctx := context.Background()
	up := []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65001, State: "established", Since: since, Prefixes: 1}}
	down := []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65001, State: "active", Since: since.Add(time.Minute), LastError: "peer closed"}}
	steps := []struct {
		name      string
		peers     []nodestatus.Peer
		wantWrote bool
		wantCalls []call
	}{
		{"first: create", up, true, []call{{"get", ""}, {"create", ""}}},
		{"same sessions: no API call", up, false, nil},
		{"same sessions, since with another zone and fraction: no API call", []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65001, State: "established", Since: since.UTC().Add(100 * time.Millisecond), Prefixes: 1}}, false, nil},
		{"changed: update", down, true, []call{{"get", ""}, {"update", "1"}}},
		{"changed back: update", up, true, []call{{"get", ""}, {"update", "2"}}},
	}
	cs := fake.NewClientset()
	bumpResourceVersion(cs)
	p := nodestatus.NewPublisher(kubeclienttest.Wrap(cs), "kube-system", "node1")
	for _, s := range steps {
		wrote, err := p.Publish(ctx, s.peers)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if wrote != s.wantWrote {
			t.Errorf("%s: wrote = %v, want %v", s.name, wrote, s.wantWrote)
		}
		if diff := cmp.Diff(s.wantCalls, calls(cs)); diff != "" {
			t.Errorf("%s: calls (-want +got):\n%s", s.name, diff)
		}
	}
	l, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, "vigil-node-node1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := nodestatus.Encode(up)
	if got := l.Annotations[nodestatus.PeersAnnotation]; got != want || l.Labels[nodestatus.ManagedByLabel] != "vigil" {
		t.Errorf("lease annotation %q labels %v, want %q and managed-by=vigil", got, l.Labels, want)
	}
	if l.Spec.HolderIdentity != nil {
		t.Errorf("node lease has a holder %q: it must take no part in elections", *l.Spec.HolderIdentity)
	}
}

// bumpResourceVersion makes the fake clientset count resourceVersions as
// the API server does (it keeps whatever the client sent).
func bumpResourceVersion(cs *fake.Clientset) {
	n := 0
	bump := func(a k8stesting.Action) (bool, runtime.Object, error) {
		var obj runtime.Object
		switch a := a.(type) {
		case k8stesting.CreateAction:
			obj = a.GetObject()
		case k8stesting.UpdateAction:
			obj = a.GetObject()
		}
		n++
		obj.(*coordinationv1.Lease).ResourceVersion = strconv.Itoa(n)
		return false, nil, nil
	}
	cs.PrependReactor("create", "leases", bump)
	cs.PrependReactor("update", "leases", bump)
}

// A Lease already holding the sessions (an agent restarted) is not
// rewritten; labels are restored if someone removed them.
func TestPublishExisting(t *testing.T) {
	ctx := context.Background()
	peers := []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65001, State: "established", Since: since, Prefixes: 1}}
	v, _ := nodestatus.Encode(peers)
	tests := []struct {
		name      string
		existing  coordinationv1.Lease
		wantWrote bool
		wantCalls []call
	}{
		{"same sessions", nodeLease("vigil-node-node1", "vigil", v), false, []call{{"get", ""}}},
		{"label missing", nodeLease("vigil-node-node1", "", v), true, []call{{"get", ""}, {"update", "7"}}},
		{"older sessions", nodeLease("vigil-node-node1", "vigil", `[]`), true, []call{{"get", ""}, {"update", "7"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.existing.ResourceVersion = "7"
			cs := fake.NewClientset(&tt.existing)
			cs.ClearActions()
			p := nodestatus.NewPublisher(kubeclienttest.Wrap(cs), "kube-system", "node1")
			wrote, err := p.Publish(ctx, peers)
			if err != nil || wrote != tt.wantWrote {
				t.Errorf("Publish = %v, %v; want %v, nil", wrote, err, tt.wantWrote)
			}
			if diff := cmp.Diff(tt.wantCalls, calls(cs)); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if wrote, err := p.Publish(ctx, peers); wrote || err != nil || len(calls(cs)) != 0 {
				t.Errorf("second Publish of the same sessions = %v, %v, with API calls", wrote, err)
			}
		})
	}
}

// A failed write is returned and retried on the next call even with the
// same sessions.
func TestPublishErrorRetried(t *testing.T) {
	ctx := context.Background()
	peers := []nodestatus.Peer{{Peer: "198.18.0.254", ASN: 65001, State: "established"}}
	cs := fake.NewClientset()
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "vigil-node-node1", errors.New("stale"))
	fail := true
	cs.PrependReactor("create", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if fail {
			return true, nil, conflict
		}
		return false, nil, nil
	})
	p := nodestatus.NewPublisher(kubeclienttest.Wrap(cs), "kube-system", "node1")
	if wrote, err := p.Publish(ctx, peers); wrote || !apierrors.IsConflict(err) {
		t.Fatalf("Publish with a conflict = %v, %v; want false and the conflict", wrote, err)
	}
	fail = false
	if wrote, err := p.Publish(ctx, peers); !wrote || err != nil {
		t.Fatalf("Publish after the conflict = %v, %v; want true, nil", wrote, err)
	}
}

package cli

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/members"
	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

// TestMembersSettings: members on needs a good key; a bad one stops
// start-up naming the variable and never echoing the key.
func TestMembersSettings(t *testing.T) {
	key32 := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring; "" means valid
		wantOn  bool
	}{
		{name: "off by default"},
		{name: "off ignores a bad key", env: map[string]string{"vigil_members_key": "secret!"}},
		{name: "on with a 32-byte key", env: map[string]string{"vigil_members": "true", "vigil_members_key": key32}, wantOn: true},
		{name: "on without a key", env: map[string]string{"vigil_members": "true"}, wantErr: "vigil_members_key: empty key"},
		{name: "on with a malformed key", env: map[string]string{"vigil_members": "true", "vigil_members_key": "secret!"}, wantErr: "vigil_members_key: not base64"},
		{name: "on with a short key", env: map[string]string{"vigil_members": "true", "vigil_members_key": "c2hvcnQ="}, wantErr: "vigil_members_key: key is 5 bytes"},
		{name: "port out of range", env: map[string]string{"vigil_members_port": "70000"}, wantErr: "vigil_members_port=70000"},
		{name: "port not a number", env: map[string]string{"vigil_members_port": "x"}, wantErr: "vigil_members_port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validManager()
			table := managerSettings(o)
			fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
			register(fs, table)
			err := applyEnv(fs, table, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if err == nil {
				o.nodeName = "node1"
				err = o.validate()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("settings: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "secret!"):
				t.Fatalf("error %q shows the key", err)
			}
			if err == nil && o.members.on != tt.wantOn {
				t.Errorf("members on = %v, want %v", o.members.on, tt.wantOn)
			}
		})
	}
}

func node(name string, addrs ...corev1.NodeAddress) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
}

// TestKnownPeers: every agent with a node Lease is known; one without a
// readable members record counts as running without members.
func TestKnownPeers(t *testing.T) {
	fp := "sha256:0011223344556677"
	records := map[string]nodestatus.MembersRecord{
		"node1": {Members: nodestatus.Members{On: true, Key: fp}, OK: true},
		"node2": {Members: nodestatus.Members{On: true, Key: fp}, OK: true},
		"node3": {},
		"node4": {Members: nodestatus.Members{On: false}, OK: true},
	}
	nodes := []corev1.Node{
		node("node1", corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.1"}, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "198.18.0.1"}),
		node("node2", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node2"}, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.2"}),
		node("node3", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "fd00:1ab::3"}),
		node("node5", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "198.18.0.5"}),
	}
	got := knownPeers(records, nodes)
	slices.SortFunc(got, func(a, b members.Peer) int { return strings.Compare(a.Node, b.Node) })
	want := []members.Peer{
		{Node: "node1", Addr: netip.MustParseAddr("198.18.0.1"), Members: true, Fingerprint: fp},
		{Node: "node2", Addr: netip.MustParseAddr("203.0.113.2"), Members: true, Fingerprint: fp},
		{Node: "node3", Addr: netip.MustParseAddr("fd00:1ab::3")},
		{Node: "node4"},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("knownPeers (-want +got):\n%s", diff)
	}
}

func TestManifestMembers(t *testing.T) {
	env := envOf(t, "manifest", "daemonset", "--members")
	for _, want := range []string{"vigil_members=true", "vigil_members_key=secret:vigil-members/key"} {
		if !slices.Contains(env, want) {
			t.Errorf("env %v lacks %s", env, want)
		}
	}
}

func TestRenderMembers(t *testing.T) {
	fp, other := "sha256:0011223344556677", "sha256:8899aabbccddeeff"
	on := func(key string, api bool, seen ...nodestatus.SeenMember) nodestatus.MembersRecord {
		return nodestatus.MembersRecord{Members: nodestatus.Members{On: true, Key: key, Port: 7947, API: api, Seen: seen}, OK: true}
	}
	tests := []struct {
		name string
		list memberList
		want []string
	}{
		{name: "no records"},
		{name: "unreadable", list: memberList{err: errors.New("forbidden")}, want: []string{"", "MEMBERS: forbidden"}},
		{
			name: "all on, one key",
			list: memberList{records: map[string]nodestatus.MembersRecord{
				"node2": on(fp, true, nodestatus.SeenMember{Node: "node1", API: true}),
				"node1": on(fp, true, nodestatus.SeenMember{Node: "node2", API: true}),
			}},
			want: []string{"",
				"NODE    MEMBERS   KEY                       API         SEES",
				"node1   on        sha256:0011223344556677   reachable   node2 (API reachable)",
				"node2   on        sha256:0011223344556677   reachable   node1 (API reachable)",
				"Keeping VIPs through an API server outage: on"},
		},
		{
			name: "one off, another key",
			list: memberList{records: map[string]nodestatus.MembersRecord{
				"node1": on(fp, true), "node2": on(other, false), "node3": {},
			}},
			want: []string{"",
				"NODE    MEMBERS   KEY                       API         SEES",
				"node1   on        sha256:0011223344556677   reachable   -",
				"node2   on        sha256:8899aabbccddeeff   away        -",
				"node3   off       -                         -           -",
				"Keeping VIPs through an API server outage: off (without members: node3)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := renderMembers(&out, tt.list); err != nil {
				t.Fatal(err)
			}
			want := ""
			if len(tt.want) > 0 {
				want = strings.Join(tt.want, "\n") + "\n"
			}
			if diff := cmp.Diff(want, out.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

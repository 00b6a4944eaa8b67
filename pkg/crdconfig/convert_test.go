package crdconfig

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

var cmpAddr = cmpopts.EquateComparable(netip.Addr{})

// obj reads one object; kind BGPPeer etc., spec as YAML.
func obj(t testing.TB, kind, name, spec string) *unstructured.Unstructured {
	t.Helper()
	var s map[string]any
	if err := yaml.Unmarshal([]byte(spec), &s); err != nil {
		t.Fatalf("%v\n%s", err, spec)
	}
	o := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "vigil.io/v1alpha1", "kind": kind, "spec": s}}
	o.SetName(name)
	o.SetUID(types.UID("uid-" + strings.ReplaceAll(name, " ", "-")))
	return o
}

// field returns the field an error names ("" for none).
func field(err error) string {
	var fe *fieldError
	if errors.As(err, &fe) {
		return fe.field
	}
	return ""
}

func TestPeerFrom(t *testing.T) {
	bfd := &lbconfig.BFD{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 3}
	refs := peerRefs{
		profiles: map[string]*lbconfig.BFD{"fast": bfd},
		password: func(ref corev1.SecretReference) (string, error) {
			if ref.Name == "md5" {
				return "s3cret", nil
			}
			return "", fieldErrorf("passwordSecret", "Secret vigil/%s not found", ref.Name)
		},
	}
	base := "myASN: 64512\npeerASN: 65000\npeerAddress: 198.18.0.1\n"
	sel := &lbconfig.Selector{MatchLabels: map[string]string{"rack": "1"},
		MatchExpressions: []lbconfig.Requirement{{Key: "kubernetes.io/hostname", Operator: "In", Values: []string{"n1", "n2"}}}}
	tests := []struct {
		name, spec string
		want       lbconfig.Peer
		wantField  string
	}{
		{name: "minimal", spec: base, want: lbconfig.Peer{Name: "minimal", Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000, MyASN: 64512}},
		{name: "full", spec: "myASN: 64512\npeerASN: 65000\npeerAddress: fd00:1ab::1\npeerPort: 1179\nsourceAddress: fd00:1ab::10\nrouterID: 198.18.0.10\n" +
			"holdTime: 9s\nkeepaliveTime: 3s\nconnectTime: 5s\npasswordSecret: {name: md5}\nebgpMultiHop: true\nbfdProfile: fast\nenableGracefulRestart: true\n" +
			"nodeSelectors:\n- matchLabels: {rack: \"1\"}\n  matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [n1, n2]}]\n",
			want: lbconfig.Peer{Name: "full", Address: netip.MustParseAddr("fd00:1ab::1"), Port: 1179, ASN: 65000, MyASN: 64512, Password: "s3cret",
				HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, ConnectTime: 5 * time.Second, EBGPMultiHop: true, BFD: bfd,
				GracefulRestart: true, SourceAddress: netip.MustParseAddr("fd00:1ab::10"), RouterID: netip.MustParseAddr("198.18.0.10"), Nodes: []*lbconfig.Selector{sel}}},
		{name: "hold only: keepalive a third", spec: base + "holdTime: 90s\n", want: lbconfig.Peer{Name: "hold only: keepalive a third",
			Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000, MyASN: 64512, HoldTime: 90 * time.Second, KeepaliveTime: 30 * time.Second}},
		{name: "keepalive only: hold three times", spec: base + "keepaliveTime: 5s\n", want: lbconfig.Peer{Name: "keepalive only: hold three times",
			Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000, MyASN: 64512, HoldTime: 15 * time.Second, KeepaliveTime: 5 * time.Second}},
		{name: "clear password", spec: base + "password: pw\npasswordSecret: {}\n", want: lbconfig.Peer{Name: "clear password",
			Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000, MyASN: 64512, Password: "pw"}},
		{name: "no address", spec: "myASN: 1\npeerASN: 2\n", wantField: "peerAddress"},
		{name: "bad address", spec: base + "peerAddress: router\n", wantField: "peerAddress"},
		{name: "no myASN", spec: "peerASN: 2\npeerAddress: 198.18.0.1\n", wantField: "myASN"},
		{name: "no peerASN", spec: "myASN: 2\npeerAddress: 198.18.0.1\n", wantField: "peerASN"},
		{name: "IPv6 router id", spec: base + "routerID: fd00::1\n", wantField: "routerID"},
		{name: "bad source", spec: base + "sourceAddress: eth0\n", wantField: "sourceAddress"},
		{name: "short hold", spec: base + "holdTime: 1s\n", wantField: "holdTime"},
		{name: "keepalive over hold", spec: base + "holdTime: 9s\nkeepaliveTime: 10s\n", wantField: "keepaliveTime"},
		{name: "connect 0", spec: base + "connectTime: 0s\n", wantField: "connectTime"},
		{name: "multihop iBGP", spec: "myASN: 1\npeerASN: 1\npeerAddress: 198.18.0.1\nebgpMultiHop: true\n", wantField: "ebgpMultiHop"},
		{name: "missing BFD profile", spec: base + "bfdProfile: slow\n", wantField: "bfdProfile"},
		{name: "missing Secret", spec: base + "passwordSecret: {name: nope}\n", wantField: "passwordSecret"},
		{name: "password twice", spec: base + "password: a\npasswordSecret: {name: md5}\n", wantField: "password"},
		{name: "two node selectors (any matches)", spec: base + "nodeSelectors: [{matchLabels: {a: b}}, {matchLabels: {c: d}}]\n", want: lbconfig.Peer{Name: "two node selectors (any matches)",
			Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000, MyASN: 64512, Nodes: []*lbconfig.Selector{{MatchLabels: map[string]string{"a": "b"}}, {MatchLabels: map[string]string{"c": "d"}}}}},
		{name: "bad operator", spec: base + "nodeSelectors: [{matchExpressions: [{key: a, operator: Gt, values: [\"1\"]}]}]\n", wantField: "nodeSelectors[0].matchExpressions[0].operator"},
		{name: "In without values", spec: base + "nodeSelectors: [{matchExpressions: [{key: a, operator: In}]}]\n", wantField: "nodeSelectors[0].matchExpressions[0].values"},
		{name: "bad type", spec: base + "peerPort: high\n", wantField: "spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := peerFrom(obj(t, "BGPPeer", tt.name, tt.spec), refs)
			if tt.wantField != "" {
				if field(err) != tt.wantField {
					t.Fatalf("error %v names %q, want %q", err, field(err), tt.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestBFDFrom(t *testing.T) {
	tests := []struct {
		spec      string
		want      *lbconfig.BFD
		wantField string
	}{
		{spec: "{}", want: &lbconfig.BFD{ReceiveInterval: 300 * time.Millisecond, TransmitInterval: 300 * time.Millisecond, DetectMultiplier: 3}},
		{spec: "{receiveInterval: 100, transmitInterval: 50, detectMultiplier: 5}", want: &lbconfig.BFD{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 50 * time.Millisecond, DetectMultiplier: 5}},
		{spec: "{detectMultiplier: 1}", wantField: "detectMultiplier"},
		{spec: "{receiveInterval: 5}", wantField: "receiveInterval"},
		{spec: "{transmitInterval: 60001}", wantField: "transmitInterval"},
	}
	for _, tt := range tests {
		got, err := bfdFrom(obj(t, "BFDProfile", "p", tt.spec))
		if tt.wantField != "" {
			if field(err) != tt.wantField {
				t.Errorf("%s: error %v names %q, want %q", tt.spec, err, field(err), tt.wantField)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.spec, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.spec, diff)
		}
	}
}

func TestBGPAdvFrom(t *testing.T) {
	c := func(s string) lbconfig.Community {
		v, err := lbconfig.ParseCommunity(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		spec      string
		want      lbconfig.BGPAdvertisement
		wantField string
	}{
		{spec: "{}", want: lbconfig.BGPAdvertisement{Name: "a", AggregationLength: 32, AggregationLengthV6: 128}},
		{spec: "{ipAddressPools: [p1], ipAddressPoolSelectors: [{matchLabels: {bgp: \"yes\"}}], peers: [tor1], nodeSelectors: [{matchLabels: {rack: \"1\"}}], " +
			"localPref: 200, communities: [\"65000:100\", \"large:1:2:3\"], aggregationLength: 24, aggregationLengthV6: 64}",
			want: lbconfig.BGPAdvertisement{Name: "a", Pools: []string{"p1"}, PoolSelectors: []*lbconfig.Selector{{MatchLabels: map[string]string{"bgp": "yes"}}},
				Peers: []string{"tor1"}, Nodes: []*lbconfig.Selector{{MatchLabels: map[string]string{"rack": "1"}}}, LocalPref: 200,
				Communities: []lbconfig.Community{c("65000:100"), c("large:1:2:3")}, AggregationLength: 24, AggregationLengthV6: 64}},
		{spec: "{communities: [\"1:2\", \"no-export\"]}", wantField: "communities[1]"},
		{spec: "{communities: [\"1:2\", \"1:2\"]}", wantField: "communities"},
		{spec: "{aggregationLength: 0}", wantField: "aggregationLength"},
		{spec: "{aggregationLengthV6: 129}", wantField: "aggregationLengthV6"},
		{spec: "{peers: [a, a]}", wantField: "peers"},
		{spec: "{nodeSelectors: [{matchExpressions: [{key: a, operator: Exists, values: [b]}]}]}", wantField: "nodeSelectors[0].matchExpressions[0].values"},
	}
	for _, tt := range tests {
		got, err := bgpAdvFrom(obj(t, "BGPAdvertisement", "a", tt.spec))
		if tt.wantField != "" {
			if field(err) != tt.wantField {
				t.Errorf("%s: error %v names %q, want %q", tt.spec, err, field(err), tt.wantField)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.spec, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.spec, diff)
		}
	}
}

func TestL2AdvFrom(t *testing.T) {
	got, err := l2AdvFrom(obj(t, "L2Advertisement", "l2", "{ipAddressPools: [lan], ipAddressPoolSelectors: [{matchLabels: {l2: \"yes\"}}], nodeSelectors: [{matchLabels: {edge: \"true\"}}], interfaces: [eth0]}"))
	if err != nil {
		t.Fatal(err)
	}
	want := lbconfig.L2Advertisement{Name: "l2", Pools: []string{"lan"}, PoolSelectors: []*lbconfig.Selector{{MatchLabels: map[string]string{"l2": "yes"}}},
		Nodes: []*lbconfig.Selector{{MatchLabels: map[string]string{"edge": "true"}}}, Interfaces: []string{"eth0"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := l2AdvFrom(obj(t, "L2Advertisement", "l2", "{interfaces: [eth0, eth0]}")); field(err) != "interfaces" {
		t.Errorf("duplicate interface: error %v, want one naming interfaces", err)
	}
}

func TestReasonNamesTheField(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fieldErrorf("passwordSecret", "x"), "InvalidPasswordSecret"},
		{fieldErrorf("passwordSecret.namespace", "x"), "InvalidPasswordSecret"},
		{fieldErrorf("nodeSelectors[0].matchExpressions[0].values", "x"), "InvalidNodeSelectors"},
		{errors.New("plain"), "Invalid"},
	} {
		if got := reason(tt.err); got != tt.want {
			t.Errorf("reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestPasswordFrom(t *testing.T) {
	sec := func(typ corev1.SecretType, data map[string][]byte) *corev1.Secret {
		s := &corev1.Secret{Type: typ, Data: data}
		s.Namespace, s.Name = "vigil", "md5"
		return s
	}
	if pw, err := passwordFrom(sec(corev1.SecretTypeBasicAuth, map[string][]byte{"password": []byte("pw")})); err != nil || pw != "pw" {
		t.Errorf("basic-auth Secret: %q, %v", pw, err)
	}
	for name, s := range map[string]*corev1.Secret{
		"opaque":         sec(corev1.SecretTypeOpaque, map[string][]byte{"password": []byte("pw")}),
		"no password":    sec(corev1.SecretTypeBasicAuth, map[string][]byte{"username": []byte("u")}),
		"empty password": sec(corev1.SecretTypeBasicAuth, map[string][]byte{"password": nil}),
	} {
		if pw, err := passwordFrom(s); field(err) != "passwordSecret" || pw != "" {
			t.Errorf("%s: %q, %v; want an error naming passwordSecret (never an empty password)", name, pw, err)
		}
	}
}

package kube

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestHardwareAddr(t *testing.T) {
	svc := func(uid, hw string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Annotations: map[string]string{}}}
		if hw != "" {
			s.Annotations[AnnotationHWAddr] = hw
		}
		return s
	}
	a, b := HardwareAddr(svc("uid-1", "")), HardwareAddr(svc("uid-2", ""))
	if a.String() == b.String() {
		t.Errorf("two UIDs, one MAC %s", a)
	}
	if again := HardwareAddr(svc("uid-1", "")); again.String() != a.String() {
		t.Errorf("derived MAC not stable: %s then %s", a, again)
	}
	if a[0]&1 != 0 || a[0]&2 == 0 {
		t.Errorf("derived MAC %s is not locally administered unicast", a)
	}
	tests := []struct{ hw, want string }{
		{"02:00:00:00:aa:01", "02:00:00:00:aa:01"},
		{"01:00:5e:00:00:01", a.String()}, // multicast: ignored
		{"garbage", a.String()},
	}
	for _, tt := range tests {
		if got := HardwareAddr(svc("uid-1", tt.hw)).String(); got != tt.want {
			t.Errorf("HardwareAddr with hwaddr %q = %s, want %s", tt.hw, got, tt.want)
		}
	}
}

func TestHostnameAndRequestedIP(t *testing.T) {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{}}}
	if got := Hostname(s); got != "web" {
		t.Errorf("Hostname = %q, want web", got)
	}
	s.Annotations[AnnotationHostname] = "shop"
	if got := Hostname(s); got != "shop" {
		t.Errorf("Hostname = %q, want shop", got)
	}
	if got := RequestedIP(s); got.IsValid() {
		t.Errorf("RequestedIP without annotation = %v", got)
	}
	for in, want := range map[string]netip.Addr{"198.18.0.201": netip.MustParseAddr("198.18.0.201"), "fd00::1": {}, "x": {}} {
		s.Annotations[AnnotationRequestedIP] = in
		if got := RequestedIP(s); got != want {
			t.Errorf("RequestedIP(%q) = %v, want %v", in, got, want)
		}
	}
}

package kube_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-lb/vigil/pkg/kube"
)

var cmpAddr = cmpopts.EquateComparable(netip.Addr{})

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestParseAddresses(t *testing.T) {
	tests := []struct {
		in      string
		want    kube.Request
		wantErr string // substring of the error; "" = no error
	}{
		{in: "198.18.0.10", want: kube.Request{Addrs: addrs("198.18.0.10")}},
		{in: "fd00:1ab::10", want: kube.Request{Addrs: addrs("fd00:1ab::10")}},
		{in: " 198.18.0.10 ", want: kube.Request{Addrs: addrs("198.18.0.10")}},
		{in: "198.18.0.11, 198.18.0.10 ,fd00:1ab::1", want: kube.Request{Addrs: addrs("198.18.0.10", "198.18.0.11", "fd00:1ab::1")}},
		{in: "fd00:1ab::1,198.18.0.10", want: kube.Request{Addrs: addrs("198.18.0.10", "fd00:1ab::1")}},
		{in: "198.18.0.10,198.18.0.10, 198.18.0.10", want: kube.Request{Addrs: addrs("198.18.0.10")}},
		{in: "fd00:1ab::1,fd00:1ab:0:0::1", want: kube.Request{Addrs: addrs("fd00:1ab::1")}},
		{in: "198.18.0.10,,", want: kube.Request{Addrs: addrs("198.18.0.10")}},
		// IPv4-mapped IPv6 is the IPv4 address.
		{in: "::ffff:198.18.0.10", want: kube.Request{Addrs: addrs("198.18.0.10")}},
		{in: "::ffff:198.18.0.10,198.18.0.10", want: kube.Request{Addrs: addrs("198.18.0.10")}},
		// DHCP.
		{in: "0.0.0.0", want: kube.Request{DHCP4: true}},
		{in: "::", want: kube.Request{DHCP6: true}},
		{in: "::ffff:0.0.0.0", want: kube.Request{DHCP4: true}},
		{in: "0.0.0.0, ::", want: kube.Request{DHCP4: true, DHCP6: true}},
		{in: "0.0.0.0,198.18.0.10", want: kube.Request{Addrs: addrs("198.18.0.10"), DHCP4: true}},
		// Rejected.
		{in: "not-an-ip", wantErr: "invalid address"},
		{in: "198.18.0.256", wantErr: "invalid address"},
		{in: "198.18.0.0/24", wantErr: "invalid address"},
		{in: "198.18.0.10,bogus", wantErr: "invalid address \"bogus\""},
		{in: "127.0.0.1", wantErr: "not a unicast"},
		{in: "::1", wantErr: "not a unicast"},
		{in: "::ffff:127.0.0.1", wantErr: "not a unicast"},
		{in: "224.0.0.1", wantErr: "not a unicast"},
		{in: "239.1.2.3", wantErr: "not a unicast"},
		{in: "ff02::1", wantErr: "not a unicast"},
		{in: "ff01::1", wantErr: "not a unicast"},
		{in: "169.254.1.1", wantErr: "not a unicast"},
		{in: "fe80::1", wantErr: "not a unicast"},
		{in: "255.255.255.255", wantErr: "broadcast"},
		{in: "fe80::1%eth0", wantErr: "zones"},
		{in: "fd00:1ab::1%eth0", wantErr: "zones"},
		{in: "198.18.0.10, 127.0.0.1", wantErr: "not a unicast"},
		// Empty.
		{in: "", wantErr: "no address"},
		{in: "  ", wantErr: "no address"},
		{in: " , ,", wantErr: "no address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := kube.ParseAddresses(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAddresses(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				if diff := cmp.Diff(kube.Request{}, got, cmpAddr); diff != "" {
					t.Errorf("ParseAddresses(%q) returned a non-zero Request with its error (-want +got):\n%s", tt.in, diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddresses(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
				t.Errorf("ParseAddresses(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	svc := func(annotation *string, spec string) *corev1.Service {
		s := &corev1.Service{Spec: corev1.ServiceSpec{LoadBalancerIP: spec}}
		if annotation != nil {
			s.Annotations = map[string]string{kube.AnnotationLoadBalancerIPs: *annotation}
		}
		return s
	}
	str := func(s string) *string { return &s }
	tests := []struct {
		name       string
		annotation *string
		spec       string
		want       kube.Request
		wantErr    string
	}{
		{name: "nothing", want: kube.Request{}},
		{name: "spec only", spec: "198.18.0.20", want: kube.Request{Addrs: addrs("198.18.0.20")}},
		{name: "spec with spaces", spec: " 198.18.0.20 ", want: kube.Request{Addrs: addrs("198.18.0.20")}},
		{name: "annotation only", annotation: str("198.18.0.10,fd00:1ab::10"), want: kube.Request{Addrs: addrs("198.18.0.10", "fd00:1ab::10")}},
		{name: "annotation wins over spec", annotation: str("198.18.0.10"), spec: "198.18.0.20", want: kube.Request{Addrs: addrs("198.18.0.10")}},
		{name: "empty annotation falls back to spec", annotation: str(""), spec: "198.18.0.20", want: kube.Request{Addrs: addrs("198.18.0.20")}},
		{name: "blank annotation falls back to spec", annotation: str("  "), spec: "198.18.0.20", want: kube.Request{Addrs: addrs("198.18.0.20")}},
		{name: "empty annotation and no spec", annotation: str(""), want: kube.Request{}},
		{name: "annotation DHCP", annotation: str("0.0.0.0"), spec: "198.18.0.20", want: kube.Request{DHCP4: true}},
		{name: "spec DHCP", spec: "::", want: kube.Request{DHCP6: true}},
		{name: "invalid annotation does not fall back", annotation: str("127.0.0.1"), spec: "198.18.0.20", wantErr: kube.AnnotationLoadBalancerIPs},
		{name: "annotation with only commas", annotation: str(","), spec: "198.18.0.20", wantErr: kube.AnnotationLoadBalancerIPs},
		{name: "invalid spec", spec: "bogus", wantErr: "spec.loadBalancerIP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kube.Addresses(svc(tt.annotation, tt.spec))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Addresses = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Addresses: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
				t.Errorf("Addresses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestEmpty(t *testing.T) {
	tests := []struct {
		r    kube.Request
		want bool
	}{
		{kube.Request{}, true},
		{kube.Request{Addrs: []netip.Addr{}}, true},
		{kube.Request{Addrs: addrs("198.18.0.1")}, false},
		{kube.Request{DHCP4: true}, false},
		{kube.Request{DHCP6: true}, false},
	}
	for _, tt := range tests {
		if got := tt.r.Empty(); got != tt.want {
			t.Errorf("%+v.Empty() = %v, want %v", tt.r, got, tt.want)
		}
	}
}

func TestIgnored(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		want        bool
	}{
		{"no annotations", nil, false},
		{"other annotation", map[string]string{"x": "true"}, false},
		{"true", map[string]string{kube.AnnotationIgnore: "true"}, true},
		{"TRUE", map[string]string{kube.AnnotationIgnore: "TRUE"}, true},
		{"True with spaces", map[string]string{kube.AnnotationIgnore: " True "}, true},
		{"false", map[string]string{kube.AnnotationIgnore: "false"}, false},
		{"empty", map[string]string{kube.AnnotationIgnore: ""}, false},
		{"yes", map[string]string{kube.AnnotationIgnore: "yes"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: tt.annotations}}
			if got := kube.Ignored(svc); got != tt.want {
				t.Errorf("Ignored = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPorts(t *testing.T) {
	tests := []struct {
		name  string
		ports []corev1.ServicePort
		want  []kube.Port
	}{
		{name: "none", ports: nil, want: nil},
		{
			name:  "default protocol is TCP",
			ports: []corev1.ServicePort{{Port: 80}},
			want:  []kube.Port{{Port: 80, Protocol: corev1.ProtocolTCP}},
		},
		{
			name: "explicit protocols in order",
			ports: []corev1.ServicePort{
				{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
				{Name: "sctp", Port: 9, Protocol: corev1.ProtocolSCTP},
				{Name: "http", Port: 80},
			},
			want: []kube.Port{
				{Port: 53, Protocol: corev1.ProtocolUDP},
				{Port: 53, Protocol: corev1.ProtocolTCP},
				{Port: 9, Protocol: corev1.ProtocolSCTP},
				{Port: 80, Protocol: corev1.ProtocolTCP},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := kube.Ports(&corev1.Service{Spec: corev1.ServiceSpec{Ports: tt.ports}})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Ports (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCollide(t *testing.T) {
	tcp := func(p int32) kube.Port { return kube.Port{Port: p, Protocol: corev1.ProtocolTCP} }
	udp := func(p int32) kube.Port { return kube.Port{Port: p, Protocol: corev1.ProtocolUDP} }
	tests := []struct {
		name      string
		a, b      []kube.Port
		want      kube.Port
		wantClash bool
	}{
		{name: "both empty"},
		{name: "one empty", a: []kube.Port{tcp(80)}},
		{name: "different ports", a: []kube.Port{tcp(80)}, b: []kube.Port{tcp(443)}},
		{name: "same port other protocol", a: []kube.Port{tcp(53)}, b: []kube.Port{udp(53)}},
		{name: "same port and protocol", a: []kube.Port{tcp(80)}, b: []kube.Port{tcp(80)}, want: tcp(80), wantClash: true},
		{name: "first of a that b has", a: []kube.Port{tcp(22), udp(53), tcp(80)}, b: []kube.Port{tcp(80), udp(53)}, want: udp(53), wantClash: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, clash := kube.Collide(tt.a, tt.b)
			if diff := cmp.Diff(tt.want, got); diff != "" || clash != tt.wantClash {
				t.Errorf("Collide = %v, %v; want %v, %v", got, clash, tt.want, tt.wantClash)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// FuzzParseAddresses checks ParseAddresses' invariants on any input.
func FuzzParseAddresses(f *testing.F) {
	for _, s := range []string{
		"", ",", "198.18.0.1", "198.18.0.1, 198.18.0.2", "fd00:1ab::1,198.18.0.1",
		"0.0.0.0", "::", "::ffff:198.18.0.1", "::ffff:0.0.0.0", "fe80::1%eth0",
		"127.0.0.1", "255.255.255.255", "224.0.0.1", "ff02::1", "169.254.0.1", "bogus",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := kube.ParseAddresses(s)
		if err != nil {
			if !r.Empty() {
				t.Errorf("ParseAddresses(%q) returned %+v with error %v", s, r, err)
			}
			return
		}
		if r.Empty() {
			t.Errorf("ParseAddresses(%q) succeeded with an empty Request", s)
		}
		if !slices.IsSortedFunc(r.Addrs, func(a, b netip.Addr) int { return a.Compare(b) }) {
			t.Errorf("ParseAddresses(%q): addresses not sorted: %v", s, r.Addrs)
		}
		for i, a := range r.Addrs {
			if i > 0 && r.Addrs[i-1] == a {
				t.Errorf("ParseAddresses(%q): duplicate %v", s, a)
			}
			if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() {
				t.Errorf("ParseAddresses(%q): unusable VIP %v", s, a)
			}
			if a.Is4In6() || a.Zone() != "" {
				t.Errorf("ParseAddresses(%q): %v is mapped or zoned", s, a)
			}
			back, err := netip.ParseAddr(a.String())
			if err != nil || back != a {
				t.Errorf("ParseAddresses(%q): %v does not parse back (%v, %v)", s, a, back, err)
			}
		}
	})
}

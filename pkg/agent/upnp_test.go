package agent

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/upnp"
)

// fakeMapper is a PortMapper whose state the test sets; it logs every Set.
type fakeMapper struct {
	log      *callLog
	state    map[string]upnp.State
	draining map[string]bool
}

func (m *fakeMapper) Set(key string, local netip.Addr, want []upnp.Mapping) {
	var ports []string
	for _, w := range want {
		ports = append(ports, w.Protocol+" "+w.Internal.String())
	}
	m.log.add("upnp set %s %v %v", key, local, ports)
}
func (m *fakeMapper) State(key string) upnp.State { return m.state[key] }
func (m *fakeMapper) Draining(key string) bool    { return m.draining[key] }

func (m *fakeMapper) Drain(_ context.Context, keys ...string) error {
	m.log.add("upnp drain %v", keys)
	return nil
}

func withMapper(f *fixture) *fakeMapper {
	m := &fakeMapper{log: f.log, state: map[string]upnp.State{}, draining: map[string]bool{}}
	f.a.pm = m
	return m
}

// An annotated Service announced here is forwarded from its VIP; the
// gateway's address joins the ingress; when the Service goes away the VIP
// stays up until the forwards are deleted, then goes, then the lease.
func TestSyncUPnP(t *testing.T) {
	const key = "default/web"
	svc := service("web", vip10, withAnnotation(kube.AnnotationForwardUPNP, "true"))
	f := newFixture(t, defaultConfig(), withEndpoints(svc, nodeA)...)
	m := withMapper(f)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	want := []string{"campaign " + lease(key).String(), "up " + vip10, "upnp set " + key + " " + vip10 + " [TCP " + vip10 + ":80]"}
	if diff := cmp.Diff(want, f.log.take()); diff != "" {
		t.Errorf("first sync (-want +got):\n%s", diff)
	}

	ext := netip.MustParseAddr("198.19.0.1")
	m.state[key] = upnp.State{External: ext, Mapped: []upnp.Mapping{{Protocol: "TCP", ExternalPort: 80}}}
	f.mustSync(key)
	f.log.take()
	f.flushStatus()
	var ips []string
	for _, in := range f.status(key).Ingress {
		ips = append(ips, in.IP)
	}
	if diff := cmp.Diff([]string{vip10, ext.String()}, ips); diff != "" {
		t.Errorf("ingress (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Normal VIPAcquired", "Normal UPnPMapped"}, f.events()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// Deleted: forwards are asked away, the VIP stays while they drain.
	f.remove(key)
	m.draining[key] = true
	f.mustSync(key)
	if diff := cmp.Diff([]string{"upnp set " + key + " " + vip10 + " []"}, f.log.take()); diff != "" {
		t.Errorf("delete while mapped (-want +got):\n%s", diff)
	}
	// Drained: now the VIP goes, then the lease.
	m.draining[key] = false
	m.state[key] = upnp.State{}
	f.mustSync(key)
	if diff := cmp.Diff([]string{"down " + vip10, "resign " + lease(key).String()}, f.log.take()); diff != "" {
		t.Errorf("after the drain (-want +got):\n%s", diff)
	}
}

// Losing the Service to another node hands the forwards over: no drain, the
// VIP goes at once.
func TestSyncUPnPHandover(t *testing.T) {
	const key = "default/web"
	svc := service("web", vip10, withAnnotation(kube.AnnotationForwardUPNP, "true"))
	f := newFixture(t, defaultConfig(), withEndpoints(svc, nodeA)...)
	m := withMapper(f)
	f.el.leading[lease(key)] = true
	f.mustSync(key)
	f.log.take()
	m.state[key] = upnp.State{Mapped: []upnp.Mapping{{Protocol: "TCP", ExternalPort: 80}}}

	f.el.leading[lease(key)] = false
	f.el.heldByOther[lease(key)] = true
	f.mustSync(key)
	want := []string{"upnp set " + key + " " + vip10 + " []", "campaign " + lease(key).String(), "down " + vip10}
	if diff := cmp.Diff(want, f.log.take()); diff != "" {
		t.Errorf("handover (-want +got):\n%s", diff)
	}
}

// Bug 4: on SIGTERM, forwards of a Service no other node can take are
// deleted while the VIP is still up; with another eligible node they are
// handed over (left in place for the next holder to refresh).
func TestShutdownForwards(t *testing.T) {
	const key = "default/web"
	tests := []struct {
		name   string
		others []*corev1.Node
		want   []string
	}{
		{name: "last node: drain first", want: []string{"upnp drain [" + key + "]", "down " + vip10, "resignAll"}},
		{name: "another ready node: hand over", others: []*corev1.Node{node(nodeB)}, want: []string{"down " + vip10, "resignAll"}},
		{name: "the other node is excluded: drain", others: []*corev1.Node{node(nodeB, excludedByLabel)},
			want: []string{"upnp drain [" + key + "]", "down " + vip10, "resignAll"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := service("web", vip10, withAnnotation(kube.AnnotationForwardUPNP, "true"))
			f := newFixture(t, defaultConfig(), withEndpoints(svc, nodeA)...)
			f.apply(node(nodeA))
			for _, n := range tt.others {
				f.apply(n)
			}
			withMapper(f)
			f.el.leading[lease(key)] = true
			f.mustSync(key)
			f.log.take()
			if err := f.a.shutdown(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, f.log.take()); diff != "" {
				t.Errorf("shutdown (-want +got):\n%s", diff)
			}
		})
	}
}

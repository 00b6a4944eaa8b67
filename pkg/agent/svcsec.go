package agent

import (
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/svcsec"
)

// Firewall drops traffic to the VIPs this node announces on the ports
// their Services do not expose (kube-vip's enable_service_security;
// pkg/svcsec). Set replaces the whole set of guarded VIPs.
type Firewall interface {
	Set(allowed map[netip.Addr][]svcsec.Port) error
}

// applyFirewall guards every address up on this node with the ports of the
// Services claiming it, when that changed (one pass over the Services, not
// one per address: it runs on every sync).
func (a *Agent) applyFirewall() error {
	if a.fw == nil {
		return nil
	}
	want := map[netip.Addr][]svcsec.Port{}
	for _, ip := range a.dp.Bound() {
		want[ip] = nil
	}
	for _, st := range a.states {
		for ip := range st.used() {
			if ports, ok := want[ip]; ok {
				want[ip] = append(ports, fwPorts(st.ports)...)
			}
		}
	}
	for ip, ports := range want {
		slices.SortFunc(ports, func(x, y svcsec.Port) int { return int(x.Proto)<<16 + int(x.Port) - (int(y.Proto)<<16 + int(y.Port)) })
		want[ip] = slices.Compact(ports)
	}
	if a.fwDone && maps.EqualFunc(want, a.fwLast, slices.Equal[[]svcsec.Port]) {
		return nil
	}
	if err := a.fw.Set(want); err != nil {
		return err
	}
	a.fwLast, a.fwDone = want, true
	return nil
}

// fwPorts converts a Service's ports (SCTP, TCP, UDP).
func fwPorts(ports []kube.Port) []svcsec.Port {
	proto := map[corev1.Protocol]uint8{corev1.ProtocolTCP: 6, corev1.ProtocolUDP: 17, corev1.ProtocolSCTP: 132}
	out := make([]svcsec.Port, 0, len(ports))
	for _, p := range ports {
		if n, ok := proto[p.Protocol]; ok && p.Port > 0 && p.Port < 65536 {
			out = append(out, svcsec.Port{Proto: n, Port: uint16(p.Port)})
		}
	}
	return out
}

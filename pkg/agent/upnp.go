package agent

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
	"github.com/vigil-lb/vigil/pkg/upnp"
)

const (
	// AnnotationUPnPLease sets how long each UPnP mapping is leased (a Go
	// duration like 30m, or seconds); refreshed at half that.
	AnnotationUPnPLease = "kube-vip.io/upnp-lease-duration"
	defaultUPnPLease    = time.Hour
	// maxUPnPDrain bounds how long a VIP is kept up for its forwards to be
	// deleted when its Service goes away.
	maxUPnPDrain = 3 * time.Second
)

// forwardUPnP reports whether this node should keep UPnP forwards for the
// Service: UPnP on, annotated kube-vip.io/forwardUPNP: "true", announced here.
func (a *Agent) forwardUPnP(svc *corev1.Service, v verdict, leading bool) bool {
	return a.pm != nil && svc != nil && v.active && leading &&
		strings.EqualFold(strings.TrimSpace(svc.Annotations[kube.AnnotationForwardUPNP]), "true")
}

// stopUPnP withdraws forwards the Service no longer wants. When the Service
// has gone elsewhere (another node holds it) they are simply handed over:
// the new holder maps the same VIP again. Otherwise they are deleted, and the
// VIP stays up here until that is done (at most maxUPnPDrain).
func (a *Agent) stopUPnP(key string, forward bool, lk election.Key) {
	local, had := a.upnpLocal[key]
	if !had || forward {
		return
	}
	if _, started := a.upnpDrain[key]; !started {
		a.pm.Set(key, local, nil)
		if a.elector.HeldByOther(lk) {
			delete(a.upnpLocal, key)
			delete(a.upnpSaid, key)
			return
		}
		a.upnpDrain[key] = time.Now()
		a.queue.AddAfter(key, maxUPnPDrain)
		return
	}
	if !a.isDraining(key) {
		delete(a.upnpLocal, key)
		delete(a.upnpDrain, key)
		delete(a.upnpSaid, key)
	}
}

// isDraining reports whether key's forwards are still being deleted (and
// the bound on that has not passed).
func (a *Agent) isDraining(key string) bool {
	start, ok := a.upnpDrain[key]
	if !ok || time.Since(start) >= maxUPnPDrain {
		return false
	}
	// Until the manager has taken the request in, its forwards still show
	// as mapped; then as draining until they are deleted.
	return a.pm.Draining(key) || len(a.pm.State(key).Mapped) > 0
}

// drainingUPnP reports whether ip must stay up for forwards being deleted.
func (a *Agent) drainingUPnP(ip netip.Addr) bool {
	for key, local := range a.upnpLocal {
		if local == ip && a.isDraining(key) {
			return true
		}
	}
	return false
}

// syncUPnP asks for the Service's forwards (every port, TCP and UDP, from
// the gateway's external side to VIP:port) while it is announced here, and
// reports the gateway's external address and the outcome.
func (a *Agent) syncUPnP(svc *corev1.Service, key string, forward bool, in *statusIntent) {
	if !forward || !in.up {
		return
	}
	var local netip.Addr
	for _, ip := range in.addrs {
		if ip.Is4() {
			local = ip
			break
		}
	}
	if !local.IsValid() {
		a.upnpEvent(svc, key, corev1.EventTypeWarning, "UPnPFailed", "UPnP forwards need an IPv4 VIP")
		return
	}
	lease := upnpLease(svc)
	var want []upnp.Mapping
	for _, p := range kube.Ports(svc) {
		if p.Protocol != corev1.ProtocolTCP && p.Protocol != corev1.ProtocolUDP {
			continue
		}
		want = append(want, upnp.Mapping{
			Protocol: string(p.Protocol), ExternalPort: uint16(p.Port),
			Internal:    netip.AddrPortFrom(local, uint16(p.Port)),
			Description: "vigil " + key, Lease: lease,
		})
	}
	a.pm.Set(key, local, want)
	a.upnpLocal[key] = local
	delete(a.upnpDrain, key)
	st := a.pm.State(key)
	in.external = st.External
	switch {
	case st.Err != nil:
		a.upnpEvent(svc, key, corev1.EventTypeWarning, "UPnPFailed", st.Err.Error())
	case len(st.Mapped) > 0:
		var ports []string
		for _, m := range st.Mapped {
			ports = append(ports, fmt.Sprintf("%d/%s", m.ExternalPort, m.Protocol))
		}
		a.upnpEvent(svc, key, corev1.EventTypeNormal, "UPnPMapped",
			fmt.Sprintf("gateway %s forwards %s to %s", st.External, strings.Join(ports, ","), local))
	}
}

// upnpEvent records an Event once per distinct message.
func (a *Agent) upnpEvent(svc *corev1.Service, key, typ, reason, msg string) {
	if a.upnpSaid[key] == reason+msg {
		return
	}
	a.upnpSaid[key] = reason + msg
	a.recorder.Event(svc, typ, reason, msg)
}

func upnpLease(svc *corev1.Service) time.Duration {
	v := strings.TrimSpace(svc.Annotations[AnnotationUPnPLease])
	if d, err := time.ParseDuration(v); err == nil && d >= time.Minute {
		return d
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 60 {
		return time.Duration(n) * time.Second
	}
	return defaultUPnPLease
}

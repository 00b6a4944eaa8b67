package agent

import (
	"iter"
	"net/netip"
	"slices"
	"time"

	"github.com/vigil-lb/vigil/pkg/election"
	"github.com/vigil-lb/vigil/pkg/kube"
)

// serviceState is what the worker remembers about one Service between
// syncs. Only sync and shutdown touch it, under Agent.mu.
type serviceState struct {
	key        string
	lease      election.Key
	addrs      []netip.Addr // addresses it claims (its verdict was active)
	candidate  bool         // this node campaigns for it
	routed     bool         // this node advertises it by BGP
	l2         bool         // it goes out by L2 (its pool's advertisements)
	pool       string       // the pool its addresses came from
	iface      string       // kube-vip.io/serviceInterface ("": default)
	vlan       kube.VLANRef // kube-vip.io/serviceVLAN (ID 0: none)
	ports      []kube.Port  // its ports (enable_service_security)
	announcing bool         // this node announces it
	yield      bool         // hand it over: the next sync withdraws it and resigns (rebalance.go)
	dhcpAddrs  []netip.Addr // DHCP addresses up here
	upnp       upnpState
	said       map[string]bool // Events already sent for it (once each)
}

// upnpState is a Service's port forwards as this node made them.
type upnpState struct {
	local      netip.Addr // VIP the forwards point at (invalid: none)
	drainSince time.Time  // when their deletion started (zero: not deleting)
}

// state returns key's state, creating it.
func (a *Agent) state(key string) *serviceState {
	st, ok := a.states[key]
	if !ok {
		st = &serviceState{key: key, said: map[string]bool{}}
		a.states[key] = st
	}
	return st
}

// claim records which addresses the Service claims now and returns every
// address whose plan may have changed (what it claimed before and now).
// A Service whose forwards are still being deleted keeps its old claim.
func (st *serviceState) claim(active bool, svc *kube.Service) []netip.Addr {
	var now []netip.Addr
	if svc != nil {
		now = svc.Addrs
	}
	touched := append(slices.Clone(st.addrs), now...)
	switch {
	case active:
		st.addrs = slices.Clone(now)
	case st.upnp.drainSince.IsZero():
		st.addrs = nil
	}
	slices.SortFunc(touched, func(x, y netip.Addr) int { return x.Compare(y) })
	return slices.Compact(touched)
}

// idle reports whether nothing is left to remember about a deleted Service.
func (st *serviceState) idle() bool {
	return len(st.addrs) == 0 && !st.candidate && !st.routed && !st.announcing && len(st.dhcpAddrs) == 0 && !st.upnp.local.IsValid()
}

// once reports whether msg is new for the Service, and records it.
func (st *serviceState) once(msg string) bool {
	if st.said[msg] {
		return false
	}
	st.said[msg] = true
	return true
}

// uses reports whether ip is one of the Service's addresses here: asked for
// or leased by DHCP.
func (st *serviceState) uses(ip netip.Addr) bool {
	return slices.Contains(st.addrs, ip) || slices.Contains(st.dhcpAddrs, ip)
}

// used yields the Service's addresses here: asked for, then leased by DHCP.
func (st *serviceState) used() iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		for _, used := range [...][]netip.Addr{st.addrs, st.dhcpAddrs} {
			for _, ip := range used {
				if !yield(ip) {
					return
				}
			}
		}
	}
}

// index finds the Service states by what they use here (their addresses,
// the Lease they campaign for, the VIP their forwards point at): what one
// address or Lease needs is read from the Services on it, not from every
// Service (a takeover of hundreds of Services would walk them all once
// each). Only update changes what an indexed state uses. Most keys have
// one state (a shared address has a few): a slice each, not a set.
type index[K comparable] struct {
	keys func(*serviceState) iter.Seq[K] // what a state is found by
	m    map[K][]*serviceState
}

func newIndex[K comparable](keys func(*serviceState) iter.Seq[K]) index[K] {
	return index[K]{keys: keys, m: map[K][]*serviceState{}}
}

// on yields the states found by k.
func (x index[K]) on(k K) iter.Seq[*serviceState] {
	return slices.Values(x.m[k])
}

// has reports whether some state is found by k.
func (x index[K]) has(k K) bool { return len(x.m[k]) > 0 }

// update runs change, which may change what st is found by, and
// re-indexes st.
func (x index[K]) update(st *serviceState, change func()) {
	for k := range x.keys(st) {
		if rest := slices.DeleteFunc(x.m[k], func(o *serviceState) bool { return o == st }); len(rest) > 0 {
			x.m[k] = rest
		} else {
			delete(x.m, k)
		}
	}
	change()
	for k := range x.keys(st) {
		if !slices.Contains(x.m[k], st) {
			x.m[k] = append(x.m[k], st)
		}
	}
}

// campaign yields the Lease this node campaigns for on the Service's
// behalf, if it is a candidate.
func (st *serviceState) campaign() iter.Seq[election.Key] {
	return func(yield func(election.Key) bool) {
		if st.candidate {
			yield(st.lease)
		}
	}
}

// forwarded yields the VIP the Service's UPnP forwards point at, if any.
func (st *serviceState) forwarded() iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		if st.upnp.local.IsValid() {
			yield(st.upnp.local)
		}
	}
}

//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/vigil-lb/vigil/testing/chaos/checker"
)

// newSvc adds a Service of kind to the workload (not yet applied).
func (k *campaign) newSvc(kind string) *chaosSvc {
	k.next++
	s := &chaosSvc{name: fmt.Sprintf("churn-%s-%d", kind, k.next), kind: kind, port: 8080, endpoints: k.nodeNames()}
	switch kind {
	case "static":
		s.addrs = []netip.Addr{k.takeStatic()}
	case "local":
		s.addrs, s.local, s.endpoints = []netip.Addr{k.takeStatic()}, true, k.someNodes()
	}
	k.svcs[s.name] = s
	return s
}

// someSvc picks a random workload Service matching ok (nil when none).
func (k *campaign) someSvc(ok func(*chaosSvc) bool) *chaosSvc {
	var names []string
	for n, s := range k.svcs {
		if ok(s) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return k.svcs[names[k.rnd.Intn(len(names))]]
}

// instant is a change of the workload that heals at once: the checker
// counts it as a fault of its own kind touching the Services it changes.
func (k *campaign) instant(kind string, svcs []string, do func() error) {
	id := k.chk.FaultStarted(now(), kind, checker.Scope{Services: svcs})
	err := do()
	k.chk.FaultHealed(now(), id)
	if err != nil {
		k.logf("%s %v: %v", kind, svcs, err)
		return
	}
	k.logf("%s %v", kind, svcs)
}

// endpointFlap moves the endpoints of a Local Service to 0–2 random nodes.
func (k *campaign) endpointFlap() bool {
	s := k.someSvc(func(s *chaosSvc) bool { return s.local })
	if s == nil || !k.apiUp() {
		return false
	}
	s.endpoints = k.someNodes()
	k.instant("endpoint-flap", []string{s.name}, func() error { return k.apply(s) })
	return true
}

// churn creates, deletes, readdresses, ignores or un-ignores a Service, or
// flips its traffic policy, keeping the workload near 50 Services.
func (k *campaign) churn() bool {
	if !k.apiUp() {
		return false
	}
	ops := []struct {
		name string
		ok   bool
		do   func() (*chaosSvc, func() error)
	}{
		{"churn-create", len(k.svcs) < 55, k.churnCreate},
		{"churn-delete", len(k.svcs) > 45, k.churnDelete},
		{"churn-readdress", true, k.churnReaddress},
		{"churn-ignore", true, k.churnIgnore},
		{"churn-policy", true, k.churnPolicy},
	}
	op := ops[k.rnd.Intn(len(ops))]
	if !op.ok {
		return false
	}
	s, do := op.do()
	if s == nil {
		return false
	}
	k.instant(op.name, []string{s.name}, do)
	return true
}

func (k *campaign) churnCreate() (*chaosSvc, func() error) {
	kinds := []string{"static", "local", "auto"}
	s := k.newSvc(kinds[k.rnd.Intn(len(kinds))])
	return s, func() error { return k.apply(s) }
}

func (k *campaign) churnDelete() (*chaosSvc, func() error) {
	s := k.someSvc(func(*chaosSvc) bool { return true })
	if s == nil {
		return nil, nil
	}
	delete(k.svcs, s.name)
	for _, a := range s.addrs {
		delete(k.taken, a)
	}
	k.mu.Lock()
	dhcpDown := k.dhcpDown
	k.mu.Unlock()
	return s, func() error {
		if s.kind == "dhcp" && dhcpDown {
			k.noteLostDHCP(s.name)
		}
		return k.remove(s)
	}
}

// noteLostDHCP remembers the address of a DHCP Service deleted while the
// server was down: its lease cannot be released, so it is no leftover.
func (k *campaign) noteLostDHCP(name string) {
	l, err := k.apiServices(k.ctx)
	if err != nil {
		return
	}
	for _, s := range l {
		if s.Name == name {
			k.mu.Lock()
			k.lostDHCP = append(k.lostDHCP, s.Ingress...)
			k.mu.Unlock()
		}
	}
}

func (k *campaign) churnReaddress() (*chaosSvc, func() error) {
	s := k.someSvc(func(s *chaosSvc) bool { return s.kind == "static" || s.kind == "local" })
	if s == nil {
		return nil, nil
	}
	a := k.takeStatic()
	if !a.IsValid() {
		return nil, nil
	}
	old := s.addrs
	s.addrs = []netip.Addr{a}
	return s, func() error {
		err := k.apply(s)
		for _, o := range old {
			if !slices.Contains(s.addrs, o) {
				delete(k.taken, o)
			}
		}
		return err
	}
}

func (k *campaign) churnIgnore() (*chaosSvc, func() error) {
	s := k.someSvc(func(s *chaosSvc) bool { return s.kind != "dhcp" && s.kind != "shared" })
	if s == nil {
		return nil, nil
	}
	s.ignored = !s.ignored
	return s, func() error { return k.apply(s) }
}

func (k *campaign) churnPolicy() (*chaosSvc, func() error) {
	s := k.someSvc(func(s *chaosSvc) bool { return s.kind == "static" || s.kind == "auto" })
	if s == nil {
		return nil, nil
	}
	s.local = !s.local
	return s, func() error { return k.apply(s) }
}

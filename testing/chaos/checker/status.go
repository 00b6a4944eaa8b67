package checker

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// Status takes one listing of the Services from the API server (so the API
// is up at that moment): invariants 3 (status vs network) and 4 (one
// address on two Services that may not share it).
func (c *Checker) Status(at time.Time, list []APIService) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.api = map[string]APIService{}
	for _, s := range list {
		c.api[s.Name] = s
	}
	c.checkStatus(at)
	c.checkClashes(at, list)
}

// checkStatus: for a managed, settled Service the ingress must list exactly
// its addresses that some node holds (or the router routes), within
// StatusSlack of API uptime.
func (c *Checker) checkStatus(at time.Time) {
	still := map[string]bool{}
	for name, w := range c.svcs {
		s, ok := c.api[name]
		if !ok || !w.Managed {
			delete(c.mismatch, name)
			continue
		}
		want := c.heldOf(c.addrsOf(w))
		got := sorted(s.Ingress)
		if slices.Equal(want, got) {
			delete(c.mismatch, name)
			continue
		}
		first, ok := c.mismatch[name]
		if !ok {
			first = at
			c.mismatch[name] = at
		}
		since, settled := c.settledSince(w)
		if !settled || !c.apiUp {
			continue
		}
		from := latest(first, since, c.apiUpSince)
		if at.Sub(from) <= c.cfg.StatusSlack {
			continue
		}
		key := "status/" + name
		still[key] = true
		c.openOrKeep(key, Violation{Kind: StatusMismatch, Subject: name, Start: from,
			Detail: fmt.Sprintf("ingress %v, network %v", got, want)})
	}
	c.closeMissing(StatusMismatch, "status/", still, at)
}

// heldOf keeps the addresses some node holds on the LAN, or the BGP router
// routes to some node, sorted.
func (c *Checker) heldOf(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if len(c.held[a]) > 0 || len(c.routes[a]) > 0 {
			out = append(out, a)
		}
	}
	return sorted(out)
}

// checkClashes: Services that show one address must all carry the same
// non-empty sharing key.
func (c *Checker) checkClashes(at time.Time, list []APIService) {
	users := map[netip.Addr][]string{}
	for _, s := range list {
		if w := c.svcs[s.Name]; w == nil || !w.Managed {
			continue
		}
		for _, a := range uniqAddrs(append(append([]netip.Addr(nil), s.Ingress...), s.Assigned...)) {
			users[a] = append(users[a], s.Name)
		}
	}
	still := map[string]bool{}
	for a, names := range users {
		if len(names) < 2 || c.mayShare(names) {
			continue
		}
		sort.Strings(names)
		key := "clash/" + a.String()
		still[key] = true
		c.openOrKeep(key, Violation{Kind: AddressClash, Subject: a.String(), Start: at,
			Detail: "given to " + strings.Join(names, ", ")})
	}
	c.closeMissing(AddressClash, "clash/", still, at)
}

func (c *Checker) mayShare(names []string) bool {
	key := c.svcs[names[0]].Share
	if key == "" {
		return false
	}
	for _, n := range names[1:] {
		if c.svcs[n].Share != key {
			return false
		}
	}
	return true
}

func sorted(addrs []netip.Addr) []netip.Addr {
	out := uniqAddrs(addrs)
	if len(out) == 0 {
		return nil
	}
	return out
}

func uniqAddrs(addrs []netip.Addr) []netip.Addr {
	out := append([]netip.Addr(nil), addrs...)
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

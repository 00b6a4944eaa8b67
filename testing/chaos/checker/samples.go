package checker

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// Holders takes one netlink round: the VIP addresses each node holds (the
// nodes' own addresses already left out). Two holders of one address is
// invariant 1.
func (c *Checker) Holders(at time.Time, byNode map[string][]netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := map[netip.Addr][]string{}
	for node, addrs := range byNode {
		for _, a := range addrs {
			if !slices.Contains(held[a], node) {
				held[a] = append(held[a], node)
			}
		}
	}
	still := map[string]bool{}
	for a, nodes := range held {
		sort.Strings(nodes)
		if len(nodes) < 2 {
			continue
		}
		key := "hold/" + a.String()
		still[key] = true
		c.openOrKeep(key, Violation{Kind: TwoHolders, Subject: a.String(), Start: at,
			Detail: "held by " + strings.Join(nodes, ", ")})
	}
	c.closeMissing(TwoHolders, "hold/", still, at)
	c.held = held
}

// Answers takes one ARP/NDP probe round: for each probed address, the nodes
// whose replies came back. Two answerers in one round is invariant 1; no
// answer for a settled Service that should be announced is invariant 2.
func (c *Checker) Answers(at time.Time, round map[netip.Addr][]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	still := map[string]bool{}
	for a, nodes := range round {
		nodes = uniq(nodes)
		if len(nodes) >= 2 {
			key := "answer/" + a.String()
			still[key] = true
			c.openOrKeep(key, Violation{Kind: TwoHolders, Subject: a.String(), Start: at,
				Detail: "answered by " + strings.Join(nodes, ", ")})
		}
		if len(nodes) > 0 {
			c.answered(at, a)
		}
	}
	c.closeMissing(TwoHolders, "answer/", still, at)
	c.checkAnnounced(at)
}

// Routes takes one sample of a BGP router's host routes: a VIP with a
// route via some node counts as announced (invariant 2) as a probe answer
// does; the routes are kept for the leftover check (Routed).
func (c *Checker) Routes(at time.Time, routes map[netip.Addr][]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, via := range routes {
		if len(via) > 0 {
			c.answered(at, a)
		}
	}
	c.routes = routes
}

// Routed is the last router sample: the nodes each host route goes via.
func (c *Checker) Routed() map[netip.Addr][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[netip.Addr][]string, len(c.routes))
	for a, via := range c.routes {
		out[a] = append([]string(nil), via...)
	}
	return out
}

// answered notes an answer for a and records the gap it ends, if any.
func (c *Checker) answered(at time.Time, a netip.Addr) {
	last, ok := c.lastAnswer[a]
	c.lastAnswer[a] = at
	if !ok || at.Sub(last) <= c.cfg.AnswerWindow {
		return
	}
	if w := c.steadilyWanted(a, last); w != nil {
		c.gaps = append(c.gaps, Gap{VIP: a, FaultKind: c.blame(w, last, at), Start: last, Length: at.Sub(last)})
	}
}

// steadilyWanted: some Service that should be announced has asked for a,
// unchanged, since before since (a gap of a VIP its Service gave up, or
// moved, is no failover); it returns that Service.
func (c *Checker) steadilyWanted(a netip.Addr, since time.Time) *wanted {
	for _, name := range sortedKeys(c.svcs) {
		if w := c.svcs[name]; w.Announce && w.changed.Before(since) && slices.Contains(c.addrsOf(w), a) {
			return w
		}
	}
	return nil
}

// blame names the kind of the latest fault touching w, started before end,
// that was active, or in its grace period, when the gap began.
func (c *Checker) blame(w *wanted, start, end time.Time) string {
	kind, latest := "none", time.Time{}
	for _, f := range c.faults {
		if f.start.After(end) || f.start.Before(latest) || !c.touches(f, w) {
			continue
		}
		if f.healed.IsZero() || !f.healed.Add(c.grace()).Before(start) {
			kind, latest = f.kind, f.start
		}
	}
	return kind
}

// checkAnnounced is invariant 2 for every Service that should be announced.
func (c *Checker) checkAnnounced(at time.Time) {
	still := map[string]bool{}
	for name, w := range c.svcs {
		since, settled := c.settledSince(w)
		if !w.Announce || !settled || at.Before(since) {
			continue
		}
		addrs := c.addrsOf(w)
		if len(addrs) == 0 {
			if !c.apiUp {
				continue
			}
			key := "announce/" + name
			still[key] = true
			c.openOrKeep(key, Violation{Kind: NotAnnounced, Subject: name, Start: at, Detail: "no address assigned"})
			continue
		}
		for _, a := range addrs {
			if last, ok := c.lastAnswer[a]; ok && at.Sub(last) <= c.cfg.AnswerWindow {
				continue
			}
			key := "announce/" + name + "/" + a.String()
			still[key] = true
			c.openOrKeep(key, Violation{Kind: NotAnnounced, Subject: name, Start: at,
				Detail: fmt.Sprintf("%s unanswered, settled since %s (%s)", a, since.UTC().Format("15:04:05.000"), settledBy(w))})
		}
	}
	c.closeMissing(NotAnnounced, "announce/", still, at)
}

// addrsOf is what the Service asked for, else what the API says it got.
func (c *Checker) addrsOf(w *wanted) []netip.Addr {
	if len(w.Addrs) > 0 {
		return w.Addrs
	}
	s := c.api[w.Name]
	if len(s.Assigned) > 0 {
		return s.Assigned
	}
	return s.Ingress
}

// Targets are the addresses worth probing: every address a Service asks
// for or the API shows, and every address a node holds.
func (c *Checker) Targets() []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := map[netip.Addr]bool{}
	for _, w := range c.svcs {
		for _, a := range w.Addrs {
			set[a] = true
		}
	}
	for _, s := range c.api {
		for _, a := range append(append([]netip.Addr(nil), s.Ingress...), s.Assigned...) {
			set[a] = true
		}
	}
	for a := range c.held {
		set[a] = true
	}
	out := make([]netip.Addr, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func uniq(ss []string) []string {
	out := append([]string(nil), ss...)
	sort.Strings(out)
	return slices.Compact(out)
}

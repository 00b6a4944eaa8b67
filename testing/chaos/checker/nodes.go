//go:build linux

package checker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Node is one node namespace the sampler watches, with the addresses that
// are its own (not VIPs).
type Node struct {
	Name string
	NS   string
	Own  []netip.Addr
}

// NodeSampler lists, over netlink, the addresses and links of every node
// namespace and feeds the checker who holds what.
type NodeSampler struct {
	nodes   []Node
	handles []*netlink.Handle

	mu   sync.Mutex
	macs map[string]string // MAC -> node, for every link seen in a node
	base map[string]State
}

// State is what a node has beyond its own addresses: VIP addresses, links
// and routes, each as text.
type State struct {
	Addrs  []netip.Addr
	Links  []string // name type mac
	Routes []string
}

// NewNodeSampler opens a netlink handle inside every node namespace.
func NewNodeSampler(nodes []Node) (*NodeSampler, error) {
	s := &NodeSampler{nodes: nodes, macs: map[string]string{}}
	for _, n := range nodes {
		nsh, err := netns.GetFromName(n.NS)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("open namespace %s: %w", n.NS, err)
		}
		h, err := netlink.NewHandleAt(nsh)
		nsh.Close()
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("netlink in %s: %w", n.NS, err)
		}
		s.handles = append(s.handles, h)
	}
	return s, nil
}

// Close releases the netlink handles.
func (s *NodeSampler) Close() {
	for _, h := range s.handles {
		h.Close()
	}
}

// Node names the node owning mac ("" when no node has it).
func (s *NodeSampler) Node(mac net.HardwareAddr) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.macs[mac.String()]
}

// Run samples every interval until ctx ends, feeding c.Holders.
func (s *NodeSampler) Run(ctx context.Context, c *Checker, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		held := map[string][]netip.Addr{}
		for i, n := range s.nodes {
			addrs, err := s.vipAddrs(i, false)
			if err != nil {
				return err
			}
			held[n.Name] = addrs
		}
		c.Holders(time.Now(), held)
		if err := s.learnMACs(); err != nil {
			return err
		}
	}
}

// vipAddrs lists node i's addresses that are not its own, link-local or
// loopback; withLo includes those bound on lo (BGP VIPs, which every
// advertising node binds there: no LAN holder).
func (s *NodeSampler) vipAddrs(i int, withLo bool) ([]netip.Addr, error) {
	as, err := s.handles[i].AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", s.nodes[i].Name, err)
	}
	lo, err := s.handles[i].LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("lo of %s: %w", s.nodes[i].Name, err)
	}
	var out []netip.Addr
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || slices.Contains(s.nodes[i].Own, ip) || (!withLo && a.LinkIndex == lo.Attrs().Index) {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
}

// learnMACs maps the MAC of every link of every node to the node (a DHCP
// macvlan answers ARP with its own MAC).
func (s *NodeSampler) learnMACs() error {
	for i, n := range s.nodes {
		links, err := s.handles[i].LinkList()
		if err != nil {
			return fmt.Errorf("links of %s: %w", n.Name, err)
		}
		s.mu.Lock()
		for _, l := range links {
			if mac := l.Attrs().HardwareAddr; len(mac) == 6 {
				s.macs[mac.String()] = n.Name
			}
		}
		s.mu.Unlock()
	}
	return nil
}

// Snapshot reads what every node has now (addresses beyond its own, links,
// main-table routes).
func (s *NodeSampler) Snapshot() (map[string]State, error) {
	out := map[string]State{}
	for i, n := range s.nodes {
		st, err := s.state(i)
		if err != nil {
			return nil, err
		}
		out[n.Name] = st
	}
	return out, nil
}

func (s *NodeSampler) state(i int) (State, error) {
	var st State
	var err error
	if st.Addrs, err = s.vipAddrs(i, true); err != nil {
		return st, err
	}
	links, err := s.handles[i].LinkList()
	if err != nil {
		return st, err
	}
	for _, l := range links {
		st.Links = append(st.Links, fmt.Sprintf("%s %s", l.Attrs().Name, l.Type()))
	}
	if st.Routes, err = liveRoutes(s.nodes[i].NS); err != nil {
		return st, err
	}
	sort.Strings(st.Links)
	sort.Strings(st.Routes)
	return st, nil
}

// Leftovers compares a snapshot with a baseline taken before any Service
// existed: every address, link or route that is new is left behind.
func Leftovers(base, now map[string]State) []string {
	var out []string
	for _, node := range sortedKeys(now) {
		b, n := base[node], now[node]
		for _, a := range n.Addrs {
			out = append(out, fmt.Sprintf("%s: address %s", node, a))
		}
		for _, l := range n.Links {
			if !slices.Contains(b.Links, l) {
				out = append(out, fmt.Sprintf("%s: link %s", node, l))
			}
		}
		for _, r := range n.Routes {
			if !slices.Contains(b.Routes, r) {
				out = append(out, fmt.Sprintf("%s: route %s", node, r))
			}
		}
	}
	return out
}

// liveRoutes lists the main-table routes of namespace ns, IPv4 and IPv6, as
// ip prints them, leaving out expired ones: the kernel keeps the prefix
// route of an IPv6 address that had a lifetime after the address is gone,
// until its own expiry, and lists it until its garbage collection runs
// (net.ipv6.route.gc_interval), though lookups skip it.
func liveRoutes(ns string) ([]string, error) {
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		b, err := exec.Command("ip", "-n", ns, fam, "-o", "route", "show", "table", "main").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("routes in %s: %w: %s", ns, err, b)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line != "" && !strings.Contains(line, "expires -") {
				out = append(out, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return out, nil
}

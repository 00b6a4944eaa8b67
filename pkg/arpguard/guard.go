package arpguard

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

// ErrClosed is returned by Set after Close.
var ErrClosed = errors.New("arpguard: guard is closed")

// A Guard keeps the node from answering ARP for a set of IPv4 VIPs. It is
// safe for concurrent use.
type Guard struct {
	mu     sync.Mutex
	conn   *nftables.Conn
	closed bool
	// wrote is the set's elements as the last successful write left them
	// (valid when known): a Set that changes them diffs against it
	// instead of reading a set of a thousand elements back each time.
	wrote []netip.Addr
	known bool
}

// New returns a Guard that works through conn, and so in the network
// namespace conn was made for (nftables.New() is the caller's,
// nftables.New(nftables.WithNetNSFd(fd)) another one). New changes nothing
// in the kernel; the first Set does.
func New(conn *nftables.Conn) *Guard {
	return &Guard{conn: conn}
}

// Set makes exactly the IPv4 addresses in addrs the ones the node never
// answers ARP for (IPv4-mapped addresses count as IPv4; other IPv6
// addresses are ignored, see doc.go). It creates vigil's table when addrs
// has an IPv4 address and deletes it when not, repairs a table someone else
// changed, and otherwise only adds and deletes the elements that differ.
// The zero Addr, an unspecified or a multicast address is an error and
// changes nothing.
//
// A Set that changes the elements trusts the guard's last write: it adds
// and deletes what differs from it, in one transaction, reading nothing
// back — a thousand VIPs added one by one cost a thousand small writes, not
// a thousand reads of a growing table. If that write fails (the table or
// the set is gone, an element changed behind the guard's back), or the
// guard does not know what it wrote (the first Set, a failed one), or addrs
// are the ones it wrote last (a check, which the owner makes now and
// then), Set reads the whole table back and repairs it.
func (g *Guard) Set(addrs []netip.Addr) error {
	want, err := wanted(addrs)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	if len(want) == 0 {
		g.known = false
		return remove(g.conn)
	}
	if g.known && !slices.Equal(g.wrote, want) {
		add, del := diff(g.wrote, want)
		if update(g.conn, add, del) == nil {
			g.wrote = want
			return nil
		}
		// Not as written: read it back and repair it below.
	}
	g.known = false // until this write has landed
	if err := g.repair(want); err != nil {
		return err
	}
	g.wrote, g.known = want, true
	return nil
}

// repair reads vigil's table back and makes its elements want: rebuilt
// when it is absent or altered, else only the elements that differ; mu
// must be held.
func (g *Guard) repair(want []netip.Addr) error {
	s, err := shape(g.conn)
	switch {
	case err != nil:
		return err
	case s == nil:
		return rebuild(g.conn, want)
	}
	have, err := elements(g.conn, s)
	if err != nil {
		return err
	}
	add, del := diff(have, want)
	return update(g.conn, add, del)
}

// Close deletes vigil's table, so every address is answered again as the
// kernel's sysctls say, and makes later calls to Set fail. Closing twice is
// not an error. Close does not close the nftables.Conn.
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return remove(g.conn)
}

// Cleanup deletes vigil's table through conn if it is there, for example
// one left by a run of the agent that was killed. A Guard's first Set
// repairs or deletes such a table as well. Cleanup must not run at the same
// time as a Guard's method on the same conn (a Conn batches the messages of
// all its callers).
func Cleanup(conn *nftables.Conn) error {
	return remove(conn)
}

// shape returns the guard's set when vigil's table is exactly as rebuild
// writes it (elements aside), and nil when it is absent or altered.
func shape(conn *nftables.Conn) (*nftables.Set, error) {
	t, err := find(conn)
	if err != nil || t == nil {
		return nil, err
	}
	c, s, err := objects(conn, t)
	if err != nil || c == nil || s == nil {
		return nil, err
	}
	ok, err := rulesIntact(conn, t, c)
	if err != nil || !ok {
		return nil, err
	}
	return s, nil
}

// find returns vigil's table, or nil if there is none.
func find(conn *nftables.Conn) (*nftables.Table, error) {
	ts, err := conn.ListTablesOfFamily(nftables.TableFamilyARP)
	if err != nil {
		return nil, fmt.Errorf("arpguard: list arp tables: %w", err)
	}
	for _, t := range ts {
		if t.Name == TableName {
			return t, nil
		}
	}
	return nil, nil
}

// objects returns the guard's chain and set in t, each nil unless the table
// holds exactly that one chain and that one set, as rebuild makes them.
func objects(conn *nftables.Conn, t *nftables.Table) (*nftables.Chain, *nftables.Set, error) {
	cs, err := conn.ListChainsOfTableFamily(nftables.TableFamilyARP)
	if err != nil {
		return nil, nil, fmt.Errorf("arpguard: list arp chains: %w", err)
	}
	cs = slices.DeleteFunc(cs, func(c *nftables.Chain) bool { return c.Table.Name != t.Name })
	ss, err := conn.GetSets(t)
	if err != nil {
		return nil, nil, fmt.Errorf("arpguard: list sets of arp %s: %w", t.Name, err)
	}
	if len(cs) != 1 || !chainIntact(cs[0]) || len(ss) != 1 || !setIntact(ss[0]) {
		return nil, nil, nil
	}
	return cs[0], ss[0], nil
}

func chainIntact(c *nftables.Chain) bool {
	return c.Name == ChainName && c.Type == nftables.ChainTypeFilter &&
		c.Hooknum != nil && *c.Hooknum == hookARPOut &&
		c.Policy != nil && *c.Policy == nftables.ChainPolicyAccept
}

func setIntact(s *nftables.Set) bool {
	return s.Name == SetName && s.KeyType.Name == nftables.TypeIPAddr.Name &&
		!s.Anonymous && !s.Constant && !s.Interval && !s.IsMap
}

// rulesIntact reports whether chain c holds exactly the guard's rules, as
// told by their comments.
func rulesIntact(conn *nftables.Conn, t *nftables.Table, c *nftables.Chain) (bool, error) {
	rs, err := conn.GetRules(t, c)
	if err != nil {
		return false, fmt.Errorf("arpguard: list rules of arp %s %s: %w", t.Name, c.Name, err)
	}
	var got []string
	for _, r := range rs {
		s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		got = append(got, s)
	}
	return slices.Equal(got, []string{commentReply, commentRequest}), nil
}

// elements returns the IPv4 addresses in s, sorted.
func elements(conn *nftables.Conn, s *nftables.Set) ([]netip.Addr, error) {
	es, err := conn.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("arpguard: list elements of %s: %w", s.Name, err)
	}
	out := make([]netip.Addr, 0, len(es))
	for _, e := range es {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok || !a.Is4() {
			return nil, fmt.Errorf("arpguard: element %x of %s is not an IPv4 address", e.Key, s.Name)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

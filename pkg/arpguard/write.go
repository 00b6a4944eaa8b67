package arpguard

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
)

// rebuild replaces vigil's table, whatever is in it, by the guard's chain,
// set and rules with want as the set's elements, in one transaction.
func rebuild(conn *nftables.Conn, want []netip.Addr) error {
	t := table()
	conn.AddTable(t)
	conn.DelTable(t) // the add makes this delete succeed if there was none
	conn.AddTable(t)
	c := conn.AddChain(chain(t))
	s := vipSet(t)
	if err := conn.AddSet(s, setElements(want)); err != nil {
		return fmt.Errorf("arpguard: add set %s: %w", s.Name, err)
	}
	for _, r := range rules(c, s) {
		conn.AddRule(r)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("arpguard: write arp %s: %w", t.Name, err)
	}
	return nil
}

// update adds add to the guard's set and deletes del from it, in one
// transaction.
func update(conn *nftables.Conn, add, del []netip.Addr) error {
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	s := vipSet(table())
	if len(add) > 0 {
		if err := conn.SetAddElements(s, setElements(add)); err != nil {
			return fmt.Errorf("arpguard: add %v to %s: %w", add, s.Name, err)
		}
	}
	if len(del) > 0 {
		if err := conn.SetDeleteElements(s, setElements(del)); err != nil {
			return fmt.Errorf("arpguard: delete %v from %s: %w", del, s.Name, err)
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("arpguard: update %s (add %v, delete %v): %w", s.Name, add, del, err)
	}
	return nil
}

// remove deletes vigil's table if it is there.
func remove(conn *nftables.Conn) error {
	t, err := find(conn)
	if err != nil || t == nil {
		return err
	}
	t = table()
	conn.AddTable(t)
	conn.DelTable(t) // the add makes this succeed if it went meanwhile
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("arpguard: delete arp %s: %w", t.Name, err)
	}
	return nil
}

func setElements(addrs []netip.Addr) []nftables.SetElement {
	es := make([]nftables.SetElement, len(addrs))
	for i, a := range addrs {
		es[i] = nftables.SetElement{Key: a.AsSlice()}
	}
	return es
}

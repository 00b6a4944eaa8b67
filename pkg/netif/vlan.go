package netif

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VLANLinks is the part of *netlink.Handle the VLAN functions use (the
// seam of their unit test: this machine's kernel may have no 802.1Q).
type VLANLinks interface {
	LinkByName(name string) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
	LinkDel(link netlink.Link) error
}

// VLANName is the 802.1Q link for VLAN id on parent: parent.id.
func VLANName(parent string, id int) (string, error) {
	n := parent + "." + strconv.Itoa(id)
	switch {
	case id < 1 || id > 4094:
		return "", fmt.Errorf("netif: VLAN id %d: want 1-4094", id)
	case len(n) > 15:
		return "", fmt.Errorf("netif: VLAN link name %s is longer than 15 characters", n)
	}
	return n, nil
}

// AddVLAN makes sure an 802.1Q link name with VLAN id on parent exists and
// is up. created reports whether it made it. An existing link of that name
// that is not this VLAN is an error and is left alone.
func AddVLAN(h VLANLinks, parent, name string, id int) (created bool, err error) {
	p, err := h.LinkByName(parent)
	if err != nil {
		return false, fmt.Errorf("netif: VLAN parent %q: %w", parent, err)
	}
	if cur, err := h.LinkByName(name); err == nil {
		v, ok := cur.(*netlink.Vlan)
		if !ok || v.VlanId != id || v.Attrs().ParentIndex != p.Attrs().Index {
			return false, fmt.Errorf("netif: %s exists and is not VLAN %d on %s", name, id, parent)
		}
		return false, setUp(h, cur)
	} else if !notFound(err) {
		return false, fmt.Errorf("netif: find %s: %w", name, err)
	}
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: p.Attrs().Index}, VlanId: id}
	if err := h.LinkAdd(v); err != nil {
		return false, fmt.Errorf("netif: add VLAN %s (id %d on %s): %w", name, id, parent, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return true, fmt.Errorf("netif: open new VLAN %s: %w", name, err)
	}
	return true, setUp(h, l)
}

// DeleteVLAN deletes the VLAN link name; a missing link is not an error,
// one that is not a VLAN is, and is left alone.
func DeleteVLAN(h VLANLinks, name string) error {
	l, err := h.LinkByName(name)
	switch {
	case notFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("netif: find %s: %w", name, err)
	}
	if _, ok := l.(*netlink.Vlan); !ok {
		return fmt.Errorf("netif: %s is a %s, not a VLAN; not deleting it", name, l.Type())
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("netif: delete %s: %w", name, err)
	}
	return nil
}

func setUp(h VLANLinks, l netlink.Link) error {
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("netif: set %s up: %w", l.Attrs().Name, err)
	}
	return nil
}

func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return err != nil && (errors.As(err, &nf) || errors.Is(err, unix.ENODEV))
}

// Handle is the default netlink handle (this process's namespace).
func Handle() *netlink.Handle { return handle(nil) }

package netif

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
)

// fakeLinks is an in-memory link table logging every change.
type fakeLinks struct {
	links map[string]netlink.Link
	next  int
	calls []string
}

func newFakeLinks(links ...netlink.Link) *fakeLinks {
	f := &fakeLinks{links: map[string]netlink.Link{}, next: 10}
	for _, l := range links {
		f.links[l.Attrs().Name] = l
	}
	return f
}

func (f *fakeLinks) LinkByName(n string) (netlink.Link, error) {
	if l, ok := f.links[n]; ok {
		return l, nil
	}
	return nil, netlink.LinkNotFoundError{}
}

func (f *fakeLinks) LinkAdd(l netlink.Link) error {
	v := l.(*netlink.Vlan)
	f.calls = append(f.calls, fmt.Sprintf("add %s vlan %d parent %d", v.Name, v.VlanId, v.ParentIndex))
	f.next++
	v.Index = f.next
	f.links[v.Name] = v
	return nil
}

func (f *fakeLinks) LinkSetUp(l netlink.Link) error {
	f.calls = append(f.calls, "up "+l.Attrs().Name)
	return nil
}

func (f *fakeLinks) LinkDel(l netlink.Link) error {
	f.calls = append(f.calls, "del "+l.Attrs().Name)
	delete(f.links, l.Attrs().Name)
	return nil
}

func dev(name string, index int) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name, Index: index}}
}

// kube-vip.io/serviceVLAN's netlink calls: AddVLAN creates parent.id once
// (idempotent), refuses a link of that name that is something else;
// DeleteVLAN deletes only VLANs.
func TestVLAN(t *testing.T) {
	f := newFakeLinks(dev("eth0", 2), dev("eth0.300", 3))
	name, err := VLANName("eth0", 200)
	if err != nil || name != "eth0.200" {
		t.Fatalf("VLANName = %q, %v", name, err)
	}
	if created, err := AddVLAN(f, "eth0", name, 200); err != nil || !created {
		t.Fatalf("AddVLAN: created %v, %v", created, err)
	}
	if created, err := AddVLAN(f, "eth0", name, 200); err != nil || created {
		t.Fatalf("AddVLAN again: created %v, %v", created, err)
	}
	if _, err := AddVLAN(f, "eth0", name, 201); err == nil {
		t.Error("AddVLAN with another id over eth0.200: no error")
	}
	if _, err := AddVLAN(f, "eth0", "eth0.300", 300); err == nil || !strings.Contains(err.Error(), "not VLAN 300") {
		t.Errorf("AddVLAN over a device: %v", err)
	}
	if _, err := AddVLAN(f, "eth9", "eth9.5", 5); err == nil {
		t.Error("AddVLAN on a missing parent: no error")
	}
	if err := DeleteVLAN(f, "eth0.300"); err == nil {
		t.Error("DeleteVLAN of a device: no error")
	}
	for _, n := range []string{name, name} {
		if err := DeleteVLAN(f, n); err != nil {
			t.Fatalf("DeleteVLAN(%s): %v", n, err)
		}
	}
	want := []string{"add eth0.200 vlan 200 parent 2", "up eth0.200", "up eth0.200", "del eth0.200"}
	if diff := cmp.Diff(want, f.calls); diff != "" {
		t.Errorf("netlink calls (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		parent string
		id     int
	}{{"eth0", 0}, {"eth0", 4095}, {"a-long-parent0", 10}} {
		if n, err := VLANName(tt.parent, tt.id); err == nil {
			t.Errorf("VLANName(%s, %d) = %s, want an error", tt.parent, tt.id, n)
		}
	}
}

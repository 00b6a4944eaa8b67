package vip_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/announce"
	"github.com/vigil-lb/vigil/pkg/netif"
	"github.com/vigil-lb/vigil/pkg/vip"
)

func addrsOn(t *testing.T, h *netlink.Handle, name string) []netip.Addr {
	t.Helper()
	l, err := netif.OpenWith(h, name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// kube-vip.io/serviceInterface: UseInterface pins an address to a named
// interface (or to the one by subnet, "auto") over Config.Interface; a
// bound address moves at its next Up; "" goes back to the default.
func TestKernelUseInterface(t *testing.T) {
	ns, h := fixture(t)
	netnstest.IP(t, ns, "addr", "add", "198.18.1.1/24", "dev", "eth1")
	journal := t.TempDir() + "/vips.json"
	m := vip.New(vip.Config{Interface: "eth0", Journal: journal, Announce: announce.Options{Burst: -1, Refresh: time.Hour}}, logTo(&bytes.Buffer{}))
	start(t, m)
	a, b := netip.MustParseAddr("198.18.0.20"), netip.MustParseAddr("198.18.1.20")
	steps := []struct {
		name       string
		pin        func()
		eth0, eth1 []netip.Addr
		journal    []entry
	}{
		{"default", func() {}, []netip.Addr{a, b}, nil, []entry{{"eth0", a}, {"eth0", b}}},
		{"named", func() { m.UseInterface(a, "eth1") }, []netip.Addr{b}, []netip.Addr{a}, []entry{{"eth1", a}, {"eth0", b}}},
		{"auto", func() { m.UseInterface(b, "auto") }, nil, []netip.Addr{a, b}, []entry{{"eth1", a}, {"eth1", b}}},
		{"back to the default", func() { m.UseInterface(a, ""); m.UseInterface(b, "") }, []netip.Addr{a, b}, nil, []entry{{"eth0", a}, {"eth0", b}}},
	}
	for _, st := range steps {
		st.pin()
		if err := netnstest.InNS(ns, func() error {
			for _, x := range []netip.Addr{a, b} {
				if err := m.Up(x, time.Time{}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: Up: %v", st.name, err)
		}
		if diff := cmp.Diff(st.eth0, addrsOn(t, h, "eth0"), cmpAddr); diff != "" {
			t.Errorf("%s: eth0 (-want +got):\n%s", st.name, diff)
		}
		if diff := cmp.Diff(st.eth1, addrsOn(t, h, "eth1"), cmpAddr); diff != "" {
			t.Errorf("%s: eth1 (-want +got):\n%s", st.name, diff)
		}
		if diff := cmp.Diff(st.journal, readJournal(t, journal), cmpAddr); diff != "" {
			t.Errorf("%s: journal (-want +got):\n%s", st.name, diff)
		}
	}
}

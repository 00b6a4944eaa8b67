package vip_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/announce"
	"github.com/vigil-lb/vigil/pkg/vip"
)

// kube-vip.io/dhcp-broadcast and kube-vip.io/rp_filter: the client is
// opened with the broadcast flag, the macvlan gets the rp_filter asked
// for, and a change of either starts the session over.
func TestKernelEnsureDHCPSetup(t *testing.T) {
	ns, _ := fixture(t)
	var opened []vip.DHCPClientConfig
	m := vip.New(vip.Config{
		Interface: "eth0",
		Announce:  announce.Options{Burst: -1, Refresh: time.Hour},
		NewDHCP: func(c vip.DHCPClientConfig) (vip.DHCPClient, error) {
			c.OnChange = nil
			opened = append(opened, c)
			return fakeDHCP{netip.MustParseAddr("198.18.0.51")}, nil
		},
	}, logTo(&bytes.Buffer{}))
	start(t, m)
	const key = "default/dhcp"
	link := vip.MacvlanName(key)
	mac, _ := net.ParseMAC("02:00:00:00:00:51")
	rpFilter := func() string {
		var v []byte
		if err := netnstest.InNS(ns, func() (err error) {
			v, err = os.ReadFile("/proc/sys/net/ipv4/conf/" + link + "/rp_filter")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(v))
	}
	for _, st := range []struct {
		broadcast bool
		rp        int
	}{{true, 2}, {true, 2}, {false, 0}} {
		rp := st.rp
		if err := netnstest.InNS(ns, func() error {
			_, err := m.EnsureDHCP(key, vip.DHCPParams{IPv4: true, MAC: mac, Broadcast: st.broadcast, RPFilter: &rp})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got := rpFilter(); got != string(rune('0'+rp)) {
			t.Errorf("rp_filter on %s = %s, want %d", link, got, rp)
		}
	}
	want := []vip.DHCPClientConfig{
		{Interface: link, Broadcast: true},
		{Interface: link, Broadcast: false},
	}
	if diff := cmp.Diff(want, opened, cmpAddr); diff != "" {
		t.Errorf("clients opened (-want +got):\n%s", diff)
	}
	if err := netnstest.InNS(ns, func() error { return m.StopDHCP(key) }); err != nil {
		t.Fatal(err)
	}
}

func linkExists(t *testing.T, ns, name string) bool {
	t.Helper()
	var err error
	if e := netnstest.InNS(ns, func() error { _, err = net.InterfaceByName(name); return nil }); e != nil {
		t.Fatal(e)
	}
	return err == nil
}

// kube-vip.io/macvlanName: Services naming one macvlan share it, its
// client and its address; it goes with the last of them; a crash leaves
// it journaled, and the next run removes it. A name that is a real
// interface is refused, never replaced.
func TestKernelNamedMacvlan(t *testing.T) {
	ns, _ := fixture(t)
	journal := t.TempDir() + "/vips.json"
	leased := netip.MustParseAddr("198.18.0.52")
	opened := 0
	cfg := vip.Config{
		Interface: "eth0", Journal: journal,
		Announce: announce.Options{Burst: -1, Refresh: time.Hour},
		NewDHCP: func(vip.DHCPClientConfig) (vip.DHCPClient, error) {
			opened++
			return fakeDHCP{leased}, nil
		},
	}
	m := vip.New(cfg, logTo(&bytes.Buffer{}))
	stop := start(t, m)
	mac, _ := net.ParseMAC("02:00:00:00:00:52")
	ensure := func(key, link string) (netip.Addr, error) {
		var up []netip.Addr
		err := netnstest.InNS(ns, func() (err error) {
			up, err = m.EnsureDHCP(key, vip.DHCPParams{IPv4: true, MAC: mac, Macvlan: link})
			return err
		})
		if len(up) != 1 {
			return netip.Addr{}, errors.Join(err, fmt.Errorf("%d addresses up, want 1", len(up)))
		}
		return up[0], err
	}
	for _, key := range []string{"default/a", "default/b"} {
		if a, err := ensure(key, "vgshared"); err != nil || a != leased {
			t.Fatalf("EnsureDHCP(%s) = %v, %v; want %v", key, a, err, leased)
		}
	}
	if opened != 1 || !linkExists(t, ns, "vgshared") {
		t.Fatalf("clients opened %d (want 1), vgshared exists %v", opened, linkExists(t, ns, "vgshared"))
	}
	raw, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	type linkEntry struct {
		Interface string     `json:"interface"`
		Addr      netip.Addr `json:"addr"`
		Macvlan   string     `json:"macvlan,omitempty"`
	}
	var got []linkEntry
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]linkEntry{{"vgshared", leased, ""}, {"", netip.Addr{}, "vgshared"}}, got, cmpAddr); diff != "" {
		t.Errorf("journal (-want +got):\n%s", diff)
	}
	if err := netnstest.InNS(ns, func() error { return m.StopDHCP("default/a") }); err != nil {
		t.Fatal(err)
	}
	if !linkExists(t, ns, "vgshared") || !slices.Contains(m.Bound(), leased) {
		t.Error("vgshared or its address gone while default/b still uses it")
	}
	if _, err := ensure("default/c", "eth1"); err == nil || !linkExists(t, ns, "eth1") {
		t.Errorf("macvlanName eth1 (a veth): err %v, eth1 exists %v; want an error and eth1 kept", err, linkExists(t, ns, "eth1"))
	}

	// Crash with default/b's macvlan up: the next run removes it.
	stop()
	m2 := vip.New(cfg, logTo(&bytes.Buffer{}))
	if err := netnstest.InNS(ns, func() error { _, err := m2.Recover(); return err }); err != nil {
		t.Fatal(err)
	}
	if linkExists(t, ns, "vgshared") {
		t.Error("vgshared left after Recover")
	}
}

// Both families (dhcp_mode=dual): one client each on one macvlan, both
// leased addresses bound there; the macvlan skips DAD, so DHCPv6 can speak
// from its link-local address at once; StopDHCP removes it all.
func TestKernelEnsureDHCPDual(t *testing.T) {
	ns, h := fixture(t)
	v4, v6 := netip.MustParseAddr("198.18.0.53"), netip.MustParseAddr("fd00:1ab::253")
	var opened []vip.DHCPClientConfig
	m := vip.New(vip.Config{
		Interface: "eth0",
		Announce:  announce.Options{Burst: -1, Refresh: time.Hour},
		NewDHCP: func(c vip.DHCPClientConfig) (vip.DHCPClient, error) {
			c.OnChange = nil
			opened = append(opened, c)
			if c.IPv6 {
				return fakeDHCP{v6}, nil
			}
			return fakeDHCP{v4}, nil
		},
	}, logTo(&bytes.Buffer{}))
	start(t, m)
	const key = "default/dual"
	link := vip.MacvlanName(key)
	mac, _ := net.ParseMAC("02:00:00:00:00:53")
	var up []netip.Addr
	if err := netnstest.InNS(ns, func() (err error) {
		up, err = m.EnsureDHCP(key, vip.DHCPParams{IPv4: true, IPv6: true, MAC: mac, Hostname: "dual", Requested: []netip.Addr{v6}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Addr{v4, v6}, up, cmpAddr); diff != "" {
		t.Errorf("addresses up (-want +got):\n%s", diff)
	}
	want := []vip.DHCPClientConfig{
		{Interface: link, Hostname: "dual"},
		{Interface: link, Hostname: "dual", Requested: v6, IPv6: true},
	}
	if diff := cmp.Diff(want, opened, cmpAddr); diff != "" {
		t.Errorf("clients opened (-want +got):\n%s", diff)
	}
	on := addrsOn(t, h, link)
	for _, a := range []netip.Addr{v4, v6} {
		if !slices.Contains(on, a) {
			t.Errorf("%s not bound on %s (has %v)", a, link, on)
		}
	}
	out, err := exec.Command("ip", "-n", ns, "-6", "addr", "show", "dev", link, "scope", "link").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fe80::") || strings.Contains(string(out), "tentative") {
		t.Errorf("link-local address of %s: want one, not tentative (err %v):\n%s", link, err, out)
	}
	if err := netnstest.InNS(ns, func() error { return m.StopDHCP(key) }); err != nil {
		t.Fatal(err)
	}
	if linkExists(t, ns, link) {
		t.Errorf("%s still there after StopDHCP", link)
	}
}

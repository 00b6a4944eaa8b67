package vip_test

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/internal/netnstest"
	"github.com/vigil-lb/vigil/pkg/announce"
	"github.com/vigil-lb/vigil/pkg/vip"
)

// VIPs another load balancer left on the interface go; the manager's own
// and the node's address (a /24) stay.
func TestKernelRemoveForeign(t *testing.T) {
	ns, h := fixture(t)
	left4, left6 := netip.MustParseAddr("198.18.0.50"), netip.MustParseAddr("fd00:1ab::50")
	own, node := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.1")
	netnstest.IP(t, ns, "addr", "add", "198.18.0.50/32", "dev", "eth0")
	netnstest.IP(t, ns, "addr", "add", "fd00:1ab::50/128", "dev", "eth0", "nodad")
	var logs bytes.Buffer
	m := vip.New(vip.Config{Interface: "auto", Journal: filepath.Join(t.TempDir(), "vips.json"),
		Announce: announce.Options{Burst: -1, Refresh: time.Hour}}, logTo(&logs))
	start(t, m)
	var removed []netip.Addr
	if err := netnstest.InNS(ns, func() error {
		if err := m.Up(own, time.Time{}); err != nil {
			return err
		}
		var err error
		removed, err = m.RemoveForeign([]netip.Addr{left4, left6, own, node, netip.MustParseAddr("203.0.113.9")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Addr{left4, left6}, removed, cmpAddr); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]netip.Addr{own}, hostAddrs(t, h), cmpAddr); diff != "" {
		t.Errorf("host addresses left (-want +got):\n%s", diff)
	}
}

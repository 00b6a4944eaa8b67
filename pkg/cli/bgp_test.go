package cli

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/pflag"

	"github.com/vigil-lb/vigil/pkg/lbconfig"
)

func fakeAddrs(m map[string][]string) func(string) ([]netip.Addr, error) {
	return func(iface string) ([]netip.Addr, error) {
		list, ok := m[iface]
		if !ok {
			return nil, errors.New("no such interface")
		}
		var out []netip.Addr
		for _, s := range list {
			out = append(out, netip.MustParseAddr(s))
		}
		return out, nil
	}
}

// kube-vip's bgp_* variables become the typed model; every bad value stops
// start-up with a message naming the variable.
func TestBGPSettings(t *testing.T) {
	addrs := fakeAddrs(map[string][]string{"": {"fd00:1ab::5", "198.18.0.5"}, "eth1": {"198.18.1.5"}, "v6only": {"fd00:1ab::6"}})
	hold, ka := 9*time.Second, 3*time.Second
	tests := []struct {
		name    string
		env     map[string]string
		want    bgpConfig
		wantErr string
	}{
		{name: "off", env: map[string]string{"bgp_peers": "garbage"}},
		{name: "peers and one more", env: map[string]string{"bgp_enable": "true", "bgp_as": "65001", "bgp_peers": "198.18.0.1:65000::false:1790",
			"bgp_peeraddress": "fd00:1ab::1", "bgp_peeras": "65002", "bgp_peerpass": "pw", "bgp_hold_time": "9", "bgp_keepalive_interval": "3"},
			want: bgpConfig{
				speaker: lbconfig.Speaker{ASN: 65001, RouterID: netip.MustParseAddr("198.18.0.5"), ListenPort: -1},
				peers: []lbconfig.Peer{
					{Name: "198.18.0.1", Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000, Port: 1790, HoldTime: hold, KeepaliveTime: ka},
					{Name: "fd00:1ab::1", Address: netip.MustParseAddr("fd00:1ab::1"), ASN: 65002, Password: "pw", HoldTime: hold, KeepaliveTime: ka},
				}}},
		{name: "router id from an interface, listen", env: map[string]string{"bgp_enable": "true", "bgp_routerinterface": "eth1", "bgp_peers": "198.18.0.1:65000", "vigil_bgp_listen_port": "1179"},
			want: bgpConfig{
				speaker: lbconfig.Speaker{ASN: 65000, RouterID: netip.MustParseAddr("198.18.1.5"), ListenPort: 1179},
				peers:   []lbconfig.Peer{{Name: "198.18.0.1", Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000, HoldTime: 30 * time.Second, KeepaliveTime: 10 * time.Second}}}},
		{name: "no peer (BGPPeer objects may bring them)", env: map[string]string{"bgp_enable": "true", "bgp_routerid": "198.18.0.9"},
			want: bgpConfig{speaker: lbconfig.Speaker{ASN: 65000, RouterID: netip.MustParseAddr("198.18.0.9"), ListenPort: -1}}},
		{name: "bad peers", env: map[string]string{"bgp_enable": "true", "bgp_peers": "198.18.0.1"}, wantErr: "bgp_peers:"},
		{name: "bad as", env: map[string]string{"bgp_enable": "true", "bgp_as": "0", "bgp_peers": "198.18.0.1:1"}, wantErr: "bgp_as="},
		{name: "as too big", env: map[string]string{"bgp_enable": "true", "bgp_as": "4294967296", "bgp_peers": "198.18.0.1:1"}, wantErr: "bgp_as="},
		{name: "ipv6 router id", env: map[string]string{"bgp_enable": "true", "bgp_routerid": "fd00::1", "bgp_peers": "198.18.0.1:1"}, wantErr: "bgp_routerid="},
		{name: "no ipv4 for a router id", env: map[string]string{"bgp_enable": "true", "bgp_routerinterface": "v6only", "bgp_peers": "198.18.0.1:1"}, wantErr: "bgp_routerinterface"},
		{name: "bad peer address", env: map[string]string{"bgp_enable": "true", "bgp_peeraddress": "x"}, wantErr: "bgp_peeraddress="},
		{name: "bad peer as", env: map[string]string{"bgp_enable": "true", "bgp_peeraddress": "198.18.0.1", "bgp_peeras": "-1"}, wantErr: "bgp_peeras="},
		{name: "hold time too short", env: map[string]string{"bgp_enable": "true", "bgp_peers": "198.18.0.1:1", "bgp_hold_time": "1"}, wantErr: "bgp_hold_time"},
		{name: "listen port", env: map[string]string{"bgp_enable": "true", "bgp_peers": "198.18.0.1:1", "vigil_bgp_listen_port": "70000"}, wantErr: "vigil_bgp_listen_port"},
		{name: "bad source ip", env: map[string]string{"bgp_enable": "true", "bgp_peers": "198.18.0.1:1", "bgp_sourceip": "x"}, wantErr: "bgp_sourceip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &bgpOptions{}
			table := bgpSettings(o)
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			register(fs, table)
			if err := applyEnv(fs, table, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }); err != nil {
				t.Fatal(err)
			}
			got, err := o.resolve(addrs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(bgpConfig{}), cmpopts.EquateComparable(netip.Addr{})); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

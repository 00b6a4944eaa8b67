package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
)

func TestNewRejectsBadConfig(t *testing.T) {
	id := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"ASN 0", Config{RouterID: id}},
		{"no router id", Config{ASN: 65000}},
		{"IPv6 router id", Config{ASN: 65000, RouterID: netip.MustParseAddr("fd00:1ab::1")}},
		{"listen port too big", Config{ASN: 65000, RouterID: id, ListenPort: 70000}},
		{"listen port -2", Config{ASN: 65000, RouterID: id, ListenPort: -2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := New(tc.cfg); err == nil {
				t.Errorf("New(%+v) = %v, want an error", tc.cfg, s)
			}
		})
	}
	if _, err := New(Config{ASN: 4294967295, RouterID: id}); err != nil {
		t.Errorf("New with the largest ASN: %v", err)
	}
}

// TestPeerConfig: what GoBGP is given, BFD in microseconds (not kube-vip's
// milliseconds), graceful restart off unless asked, ListenPort never 0.
func TestPeerConfig(t *testing.T) {
	p := Peer{
		Address: netip.MustParseAddr("198.18.0.254"), Port: 1179, ASN: 65001, LocalASN: 64999, Password: "s3cret",
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, ConnectTime: 1500 * time.Millisecond,
		EBGPMultiHop: 2, BFD: &BFD{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 150 * time.Millisecond},
	}
	got := peerConfig(p, netip.MustParseAddr("198.18.0.11"))
	want := &api.Peer{
		Conf:            &api.PeerConf{NeighborAddress: "198.18.0.254", PeerAsn: 65001, LocalAsn: 64999, AuthPassword: "s3cret"},
		Timers:          &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 2}},
		Transport:       &api.Transport{RemotePort: 1179, LocalAddress: "198.18.0.11"},
		AfiSafis:        []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}},
		GracefulRestart: &api.GracefulRestart{},
		EbgpMultihop:    &api.EbgpMultihop{Enabled: true, MultihopTtl: 2},
		Bfd:             &api.BfdPeerConfig{Enabled: true, RequiredMinimumReceive: 100000, DesiredMinimumTxInterval: 150000, DetectionMultiplier: 3},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(api.Peer{}, api.PeerConf{}, api.Timers{}, api.TimersConfig{},
		api.Transport{}, api.AfiSafi{}, api.AfiSafiConfig{}, api.Family{}, api.GracefulRestart{}, api.EbgpMultihop{}, api.BfdPeerConfig{})); diff != "" {
		t.Errorf("peerConfig (-want +got):\n%s", diff)
	}
	v6 := peerConfig(Peer{Address: netip.MustParseAddr("fd00:1ab::fe"), ASN: 1}, netip.MustParseAddr("198.18.0.11"))
	if v6.AfiSafis[0].Config.Family.Afi != api.Family_AFI_IP6 || v6.Transport.LocalAddress != "" {
		t.Errorf("IPv6 peer: family %v, source %q; want IPv6 and no IPv4 source", v6.AfiSafis[0].Config.Family, v6.Transport.LocalAddress)
	}
	for _, port := range []int32{0, -1} {
		if g := globalConfig(Config{ASN: 1, RouterID: netip.MustParseAddr("192.0.2.1"), ListenPort: port}); g.Global.ListenPort != -1 {
			t.Errorf("ListenPort %d became %d, want -1 (dial out only)", port, g.Global.ListenPort)
		}
	}
}

// The speaker's RIB holds the two unicast families only (GoBGP's default is
// every family it knows, each table with 2,048 pre-made shards).
func TestGlobalFamilies(t *testing.T) {
	g := globalConfig(Config{ASN: 1, RouterID: netip.MustParseAddr("192.0.2.1")})
	var got []oc.AfiSafiType
	for _, f := range g.Global.Families {
		got = append(got, oc.IntToAfiSafiTypeMap[int(f)])
	}
	want := []oc.AfiSafiType{oc.AFI_SAFI_TYPE_IPV4_UNICAST, oc.AFI_SAFI_TYPE_IPV6_UNICAST}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("families (-want +got):\n%s", diff)
	}
}

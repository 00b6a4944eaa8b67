package metrics_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/pkg/metrics"
)

// bgpSamples is every vigil_bgp_* sample of an exposition.
func bgpSamples(t *testing.T, base string) map[string]string {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d:\n%s", code, body)
	}
	out := map[string]string{}
	for k, v := range samples(t, body) {
		if strings.HasPrefix(k, "vigil_bgp_") {
			out[k] = v
		}
	}
	return out
}

// stateSeries is the six vigil_bgp_session_state series of peer, current
// set to 1 (none when current is not a BGP state).
func stateSeries(peer, current string) map[string]string {
	out := map[string]string{}
	for _, s := range []string{"idle", "connect", "active", "opensent", "openconfirm", "established"} {
		v := "0"
		if s == current {
			v = "1"
		}
		out[`vigil_bgp_session_state{peer="`+peer+`",state="`+s+`"}`] = v
	}
	return out
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// Each BGPPeers call replaces the sessions: states, up and prefixes per
// peer; a peer that is gone loses all its series.
func TestBGPPeers(t *testing.T) {
	const v4, v6 = "198.18.0.254", "fd00:1ab::fe"
	tests := []struct {
		name  string
		peers []metrics.BGPPeer
		want  map[string]string
	}{
		{name: "no peers", want: map[string]string{}},
		{
			name: "one up, one connecting",
			peers: []metrics.BGPPeer{
				{Peer: v4, State: "established", PrefixesAdvertised: 3, UpdatesSent: 7},
				{Peer: v6, State: "active"},
			},
			want: merge(stateSeries(v4, "established"), stateSeries(v6, "active"), map[string]string{
				`vigil_bgp_session_updates_sent{peer="198.18.0.254"}`: "7",
				`vigil_bgp_session_updates_sent{peer="fd00:1ab::fe"}`: "0",
				`vigil_bgp_session_up{peer="198.18.0.254"}`:           "1",
				`vigil_bgp_session_up{peer="fd00:1ab::fe"}`:           "0",
				`vigil_bgp_prefixes_advertised{peer="198.18.0.254"}`:  "3",
				`vigil_bgp_prefixes_advertised{peer="fd00:1ab::fe"}`:  "0",
			}),
		},
		{
			name: "both up, fewer prefixes",
			peers: []metrics.BGPPeer{
				{Peer: v4, State: "established", PrefixesAdvertised: 1},
				{Peer: v6, State: "established", PrefixesAdvertised: 2},
			},
			want: merge(stateSeries(v4, "established"), stateSeries(v6, "established"), map[string]string{
				`vigil_bgp_session_updates_sent{peer="198.18.0.254"}`: "0",
				`vigil_bgp_session_updates_sent{peer="fd00:1ab::fe"}`: "0",
				`vigil_bgp_session_up{peer="198.18.0.254"}`:           "1",
				`vigil_bgp_session_up{peer="fd00:1ab::fe"}`:           "1",
				`vigil_bgp_prefixes_advertised{peer="198.18.0.254"}`:  "1",
				`vigil_bgp_prefixes_advertised{peer="fd00:1ab::fe"}`:  "2",
			}),
		},
		{
			name:  "a peer removed, the other down with an unknown state",
			peers: []metrics.BGPPeer{{Peer: v6, State: "weird"}},
			want: merge(stateSeries(v6, ""), map[string]string{
				`vigil_bgp_session_updates_sent{peer="fd00:1ab::fe"}`: "0",
				`vigil_bgp_session_up{peer="fd00:1ab::fe"}`:           "0",
				`vigil_bgp_prefixes_advertised{peer="fd00:1ab::fe"}`:  "0",
			}),
		},
		{name: "all removed", want: map[string]string{}},
	}
	m := metrics.New()
	base := serve(t, m, nil)
	for _, tt := range tests { // in order: each step starts from the last
		t.Run(tt.name, func(t *testing.T) {
			m.BGPPeers(tt.peers)
			if diff := cmp.Diff(tt.want, bgpSamples(t, base)); diff != "" {
				t.Errorf("vigil_bgp_* samples (-want +got):\n%s", diff)
			}
		})
	}
}

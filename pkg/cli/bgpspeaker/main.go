// Package bgpspeaker gives vigil's command line GoBGP's speaker (pkg/bgp).
// Only cmd/vigil-bgp imports it: vigil's own binary does not link GoBGP,
// and its manager becomes vigil-bgp when bgp_enable asks for BGP.
package bgpspeaker

import (
	"github.com/vigil-lb/vigil/pkg/bgp"
	"github.com/vigil-lb/vigil/pkg/bgpspec"
	"github.com/vigil-lb/vigil/pkg/cli"
)

// New builds GoBGP's speaker as the manager's cli.Speaker.
func New(c bgpspec.Config) (cli.Speaker, error) {
	s, err := bgp.New(c)
	if err != nil {
		return nil, err // not a nil *bgp.Speaker in a non-nil interface
	}
	return s, nil
}

// Command vigil-bgp is vigil with its BGP speaker (GoBGP) linked in: the
// same command line, which `vigil manager` execs into when bgp_enable is
// set, so that vigil's own binary does not link GoBGP. All wiring lives in
// pkg/cli (and pkg/cli/bgpspeaker).
package main

import (
	"os"

	"github.com/vigil-lb/vigil/pkg/cli"
	"github.com/vigil-lb/vigil/pkg/cli/bgpspeaker"
)

func main() { os.Exit(cli.Main(os.Args[1:], bgpspeaker.New)) }

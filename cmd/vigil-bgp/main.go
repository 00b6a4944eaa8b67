// Command vigil-bgp is vigil's BGP speaker process: the agent (vigil
// manager with bgp_enable) starts it and drives it over its stdin and
// stdout. All wiring lives in pkg/cli/bgpspeaker.
package main

import (
	"os"

	"github.com/vigil-lb/vigil/pkg/cli/bgpspeaker"
)

func main() { os.Exit(bgpspeaker.Main(os.Args[1:])) }

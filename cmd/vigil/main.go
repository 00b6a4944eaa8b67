// Command vigil gives type: LoadBalancer Services an address on bare-metal
// Kubernetes. All wiring lives in pkg/cli.
package main

import (
	"os"
	"runtime"

	"github.com/vigil-lb/vigil/pkg/cli"
)

func main() {
	// Keep the main goroutine on the main thread (where main starts): with
	// bgp_enable the manager execs vigil-bgp, and Linux keeps a
	// parent-death signal set by whoever started vigil (the lab does) only
	// on that thread; an exec from another would lose it.
	runtime.LockOSThread()
	os.Exit(cli.Main(os.Args[1:], nil))
}

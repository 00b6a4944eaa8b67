// Command vigil gives type: LoadBalancer Services an address on bare-metal
// Kubernetes. All wiring lives in pkg/cli.
package main

import (
	"os"

	"github.com/vigil-lb/vigil/pkg/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], nil)) }

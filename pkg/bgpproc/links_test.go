package bgpproc

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent's binary links no BGP implementation: that is what this
// package is for (GoBGP, gRPC and their package initialisation cost every
// agent about 9 MiB of resident memory). vigil-bgp links it.
func TestAgentLinksNoGoBGP(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	deps := func(cmd string) []string {
		out, err := exec.Command(goBin, "list", "-deps", "github.com/vigil-lb/vigil/cmd/"+cmd).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", cmd, err)
		}
		return strings.Fields(string(out))
	}
	banned := []string{"github.com/osrg/gobgp", "google.golang.org/grpc", "github.com/vigil-lb/vigil/pkg/bgp"}
	links := func(pkgs []string, b string) bool {
		for _, p := range pkgs {
			if p == b || strings.HasPrefix(p, b+"/") {
				return true
			}
		}
		return false
	}
	agent, speaker := deps("vigil"), deps("vigil-bgp")
	for _, b := range banned {
		if links(agent, b) {
			t.Errorf("cmd/vigil links %s", b)
		}
		if !links(speaker, b) {
			t.Errorf("cmd/vigil-bgp does not link %s: is the speaker still in it?", b)
		}
	}
}

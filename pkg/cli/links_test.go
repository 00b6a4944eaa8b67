package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// vigil's own binary links no BGP implementation: GoBGP, gRPC and their
// package initialisation cost every process that links them about 10 MiB
// of resident memory. vigil-bgp, which the manager execs into with
// bgp_enable, links it.
func TestOnlyVigilBGPLinksGoBGP(t *testing.T) {
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
	links := func(pkgs []string, b string) bool {
		for _, p := range pkgs {
			if p == b || strings.HasPrefix(p, b+"/") {
				return true
			}
		}
		return false
	}
	vigil, vigilBGP := deps("vigil"), deps("vigil-bgp")
	for _, b := range []string{"github.com/osrg/gobgp", "google.golang.org/grpc", "github.com/vigil-lb/vigil/pkg/bgp"} {
		if links(vigil, b) {
			t.Errorf("cmd/vigil links %s", b)
		}
		if !links(vigilBGP, b) {
			t.Errorf("cmd/vigil-bgp does not link %s: where is its speaker?", b)
		}
	}
}

// Without vigil-bgp beside it or in $PATH, a manager asked for BGP stops
// at start-up naming what it lacks (and execs nothing).
func TestExecWithBGPNeedsVigilBGP(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(self), bgpBuild)); err == nil {
		t.Skip("a vigil-bgp beside the test binary: the test would exec it")
	}
	t.Setenv("PATH", t.TempDir())
	err = execWithBGP([]string{"manager"})
	if err == nil || !strings.Contains(err.Error(), "bgp_enable=true needs vigil-bgp") {
		t.Errorf("execWithBGP = %v, want the missing vigil-bgp named", err)
	}
}

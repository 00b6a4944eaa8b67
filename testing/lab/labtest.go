package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Tools the lab needs on PATH.
var requiredTools = []string{"ip", "nft", "arping", "ndisc6", "tcpdump", "dnsmasq", "miniupnpd", "upnpc", "busybox", "ss"}

// Missing explains why the lab cannot run here ("" when it can).
func Missing() string {
	if os.Geteuid() != 0 {
		return "lab tests need root (network namespaces)"
	}
	var missing []string
	for _, t := range requiredTools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return "lab tools missing: " + strings.Join(missing, " ") + " (see .ci/run for the packages)"
	}
	return ""
}

// required is true when lab tests must not skip (CI sets VIGIL_E2E_REQUIRED=1).
func required() bool { return os.Getenv("VIGIL_E2E_REQUIRED") == "1" }

// Main is a TestMain body: it starts one control plane for the whole test
// package, runs the tests, and tears it down. *cp stays nil when the lab
// cannot run here; Require then skips (or fails, in CI) each test.
func Main(m *testing.M, cp **ControlPlane) int {
	if why := Missing(); why != "" {
		if required() {
			fmt.Fprintln(os.Stderr, "VIGIL_E2E_REQUIRED=1 but", why)
			return 1
		}
		return m.Run()
	}
	root, err := os.MkdirTemp("", "vigil-lab-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	start := time.Now()
	c, err := StartControlPlane(ctx, root)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab control plane:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "lab control plane ready at %s in %v (run dir %s)\n", c.Host, time.Since(start).Round(time.Millisecond), root)
	*cp = c
	code := m.Run()
	c.Stop()
	if code == 0 && os.Getenv("VIGIL_LAB_KEEP") == "" {
		os.RemoveAll(root)
	} else {
		fmt.Fprintf(os.Stderr, "lab logs kept in %s\n", root)
	}
	return code
}

// Require skips the test when the lab cannot run here, or fails it when
// VIGIL_E2E_REQUIRED=1.
func Require(t testing.TB, cp *ControlPlane) {
	t.Helper()
	why := Missing()
	if why == "" && cp == nil {
		why = "no lab control plane (TestMain did not start one)"
	}
	if why == "" {
		return
	}
	if required() {
		t.Fatal(why)
	}
	t.Skip(why)
}

// NewTestNetwork builds a lab network for one test, connected to cp, and
// removes it when the test ends. On failure it prints the logs of every
// process the lab ran.
func NewTestNetwork(t testing.TB, cp *ControlPlane, opts Options) *Network {
	t.Helper()
	if opts.APIPort == 0 {
		opts.APIPort = cp.Port
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := NewNetwork(ctx, cp.Dir, opts)
	if err != nil {
		t.Fatalf("lab network: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			n.mu.Lock()
			procs := append([]*Proc(nil), n.procs...)
			n.mu.Unlock()
			for _, p := range procs {
				t.Logf("---- %s (%s) ----\n%s", p.Name, p.LogPath, tail(p.Log(), 6000))
			}
		}
		n.Close()
	})
	return n
}

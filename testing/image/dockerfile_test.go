// Package image holds the checks of vigil's container image build
// (Dockerfile, testing/image/build.sh); the image itself is proven in the
// lab (testing/e2e TestImage*).
package image

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return filepath.Join(filepath.Dir(self), "..", "..")
}

// buildStageCopies returns the sources the Dockerfile's build stage copies
// from the context.
func buildStageCopies(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var srcs []string
	inBuild := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			inBuild = strings.EqualFold(fields[len(fields)-1], "build") && len(fields) >= 3 && strings.EqualFold(fields[len(fields)-2], "AS")
		case "COPY":
			if inBuild && !strings.HasPrefix(fields[1], "--from") {
				srcs = append(srcs, fields[1:len(fields)-1]...)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(srcs) == 0 {
		t.Fatal("no COPY in a stage named build")
	}
	return srcs
}

// TestDockerfileBuildStageHasEverySource: the build stage copies go.mod,
// go.sum and the directory of every package of this module cmd/vigil
// imports (it once copied cmd and pkg only, and pkg/announce imports
// internal/clock). Registries are out of reach here, so the golang stage
// cannot run; make image builds the same runtime stage from the host's Go.
func TestDockerfileBuildStageHasEverySource(t *testing.T) {
	copied := buildStageCopies(t)
	covered := func(rel string) bool {
		for _, src := range copied {
			src = strings.TrimSuffix(strings.TrimPrefix(src, "./"), "/")
			if rel == src || strings.HasPrefix(rel, src+"/") {
				return true
			}
		}
		return false
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if !covered(f) {
			t.Errorf("the build stage does not copy %s", f)
		}
	}
	root := repoRoot(t)
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/vigil")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dirs := strings.Fields(string(out))
	if len(dirs) < 5 {
		t.Fatalf("go list found only %v", dirs)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		rel, err := filepath.Rel(abs, dir)
		if err != nil {
			t.Fatal(err)
		}
		if !covered(filepath.ToSlash(rel)) {
			t.Errorf("cmd/vigil needs package directory %s, which the Dockerfile's build stage does not copy", rel)
		}
	}
}

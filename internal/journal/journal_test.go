package journal_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/internal/journal"
)

type entry struct{ A, B string }

func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "j.json")
	if got, err := journal.Load[entry](path); err != nil || got != nil {
		t.Fatalf("missing journal: %v, %v", got, err)
	}
	want := []entry{{"x", "y"}, {"z", ""}}
	if err := journal.Save(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := journal.Load[entry](path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	if err := journal.Save[entry](path, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := journal.Load[entry](path); len(got) != 0 {
		t.Errorf("after saving nothing: %v", got)
	}
	if err := os.WriteFile(path, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := journal.Load[entry](path); !errors.Is(err, journal.ErrUnreadable) {
		t.Errorf("garbage: err = %v, want ErrUnreadable", err)
	}
	if err := journal.Save[entry]("", want); err != nil {
		t.Errorf("empty path: %v", err)
	}
}

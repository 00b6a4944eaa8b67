package vip_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vigil-lb/vigil/pkg/vip"
)

var cmpAddr = cmpopts.EquateComparable(netip.Addr{})

// entry mirrors the journal's JSON form.
type entry struct {
	Interface string     `json:"interface"`
	Addr      netip.Addr `json:"addr"`
}

// readJournal returns the journal's entries; it fails t if the file is
// missing or not a JSON list.
func readJournal(t *testing.T, path string) []entry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read journal: %v", err)
	}
	out := []entry{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("journal %q: %v", b, err)
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// logTo returns a logger writing text to buf.
func logTo(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// These Recover cases touch no interface: the journal names only
// interfaces that do not exist, so netif.Open fails and nothing is removed.
func TestRecoverWithoutKernel(t *testing.T) {
	// Interface names no host has (at most 15 characters).
	const gone1, gone2 = "vgl-ut-gone0", "vgl-ut-gone1"
	tests := []struct {
		name        string
		journal     *string // nil = no file
		wantJournal []entry // nil = the file must not exist
		wantWarning bool
	}{
		{name: "no file"},
		{
			name:        "empty list",
			journal:     ptr("[]"),
			wantJournal: []entry{},
		},
		{
			name:        "unparseable",
			journal:     ptr("{not json"),
			wantJournal: []entry{},
			wantWarning: true,
		},
		{
			name:        "empty file",
			journal:     ptr(""),
			wantJournal: []entry{},
			wantWarning: true,
		},
		{
			name:        "wrong shape",
			journal:     ptr(`{"interface":"eth0","addr":"198.18.0.10"}`),
			wantJournal: []entry{},
			wantWarning: true,
		},
		{
			name:        "interfaces that do not exist",
			journal:     ptr(`[{"interface":"` + gone1 + `","addr":"198.18.0.10"},{"interface":"` + gone2 + `","addr":"fd00:1ab::10"}]`),
			wantJournal: []entry{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state", "vips.json")
			if tt.journal != nil {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, path, *tt.journal)
			}
			var logs bytes.Buffer
			m := vip.New(vip.Config{Interface: "eth0", Journal: path}, logTo(&logs))
			removed, err := m.Recover()
			if err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if diff := cmp.Diff([]netip.Addr(nil), removed, cmpAddr); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
			}
			if tt.wantJournal == nil {
				if _, err := os.Stat(path); !os.IsNotExist(err) {
					t.Errorf("journal: stat = %v, want no file", err)
				}
			} else if diff := cmp.Diff(tt.wantJournal, readJournal(t, path), cmpAddr); diff != "" {
				t.Errorf("journal after Recover (-want +got):\n%s", diff)
			}
			gotWarning := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "unreadable VIP journal")
			if gotWarning != tt.wantWarning {
				t.Errorf("warning logged = %t, want %t; logs:\n%s", gotWarning, tt.wantWarning, logs.String())
			}
			if diff := cmp.Diff([]netip.Addr{}, m.Bound(), cmpAddr); diff != "" {
				t.Errorf("Bound (-want +got):\n%s", diff)
			}
		})
	}
}

// A journal path that cannot be read is an error, not an empty journal.
func TestRecoverReadError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vips.json")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	m := vip.New(vip.Config{Journal: path}, logTo(&bytes.Buffer{}))
	if _, err := m.Recover(); err == nil || !strings.Contains(err.Error(), "read journal") {
		t.Errorf("Recover with a directory as journal: err = %v, want a read error", err)
	}
}

// Without a journal, Recover has nothing to do.
func TestRecoverNoJournal(t *testing.T) {
	m := vip.New(vip.Config{}, logTo(&bytes.Buffer{}))
	removed, err := m.Recover()
	if err != nil || removed != nil {
		t.Errorf("Recover = %v, %v; want nil, nil", removed, err)
	}
}

// Down of an address never bound is a no-op and writes no journal.
func TestManagerDownUnbound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vips.json")
	m := vip.New(vip.Config{Interface: "vgl-ut-gone0", Journal: path}, logTo(&bytes.Buffer{}))
	a := netip.MustParseAddr("198.18.0.10")
	if err := m.Down(a); err != nil {
		t.Errorf("Down of an unbound address: %v", err)
	}
	if diff := cmp.Diff([]netip.Addr{}, m.Bound(), cmpAddr); diff != "" {
		t.Errorf("Bound (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("journal: stat = %v, want no file", err)
	}
}

func ptr[T any](v T) *T { return &v }

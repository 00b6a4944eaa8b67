// Package journal keeps a small JSON record of what a process put on the
// node (VIPs bound, addresses on lo), written atomically, so that the next
// run can remove what a killed one left behind.
package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Save writes entries to path atomically (a temporary file renamed into
// place), creating the directory. An empty path saves nothing.
func Save[T any](path string, entries []T) error {
	if path == "" {
		return nil
	}
	if entries == nil {
		entries = []T{}
	}
	b, err := json.Marshal(entries)
	if err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	return nil
}

// ErrUnreadable wraps a journal that exists but does not parse.
var ErrUnreadable = errors.New("unreadable journal")

// Load reads the entries at path; a missing file (or an empty path) is an
// empty journal.
func Load[T any](path string) ([]T, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	var entries []T
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("journal %s: %w: %w", path, ErrUnreadable, err)
	}
	return entries, nil
}

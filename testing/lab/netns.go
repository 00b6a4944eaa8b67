package lab

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// nsPrefix starts every namespace the lab creates.
const nsPrefix = "vgl-"

// listNamespaces returns the named namespaces under /run/netns.
func listNamespaces() ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// SweepStale deletes lab namespaces whose creating process no longer exists
// (a run that was killed before it could clean up), killing whatever still
// runs inside them. It returns the names it removed.
func SweepStale(ctx context.Context) ([]string, error) {
	names, err := listNamespaces()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, ns := range names {
		pid, ok := ownerPID(ns)
		if !ok || processAlive(pid) {
			continue
		}
		if err := deleteNamespace(ctx, ns); err != nil {
			return removed, err
		}
		removed = append(removed, ns)
	}
	return removed, nil
}

// ownerPID parses vgl-<pid>-… namespace names.
func ownerPID(ns string) (int, bool) {
	rest, ok := strings.CutPrefix(ns, nsPrefix)
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	return pid, err == nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// deleteNamespace kills every process inside ns and deletes it.
func deleteNamespace(ctx context.Context, ns string) error {
	out, _ := run(ctx, "ip", "netns", "pids", ns)
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if _, err := run(ctx, "ip", "netns", "delete", ns); err != nil {
		if _, statErr := os.Stat("/run/netns/" + ns); os.IsNotExist(statErr) {
			return nil
		}
		return err
	}
	return nil
}

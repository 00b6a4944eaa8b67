package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/vigil-lb/vigil/pkg/nodestatus"
)

// memberList is every agent's members record as `vigil status` reads it.
type memberList struct {
	records map[string]nodestatus.MembersRecord
	err     error
}

// listMembers reads the members records of the node Leases in namespace.
func listMembers(ctx context.Context, client nodestatus.LeasesGetter, namespace string) memberList {
	sel := labels.Set{nodestatus.ManagedByLabel: nodestatus.ManagedByValue}.String()
	leases, err := client.Leases(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return memberList{err: fmt.Errorf("list node leases in %s: %w", namespace, err)}
	}
	return memberList{records: nodestatus.ReadMembers(leases.Items)}
}

// renderMembers writes the MEMBERS table (LAN liveness: each agent's
// setting, key fingerprint, its view of the API and of the others) and
// whether keeping VIPs through an API outage is on; nothing when no agent
// has a record.
func renderMembers(w io.Writer, l memberList) error {
	if l.err != nil {
		_, err := fmt.Fprintf(w, "\nMEMBERS: %v\n", l.err)
		return wrapWrite(err)
	}
	rows, keeping := memberRows(l.records)
	if len(rows) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "\nNODE\tMEMBERS\tKEY\tAPI\tSEES")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Node, r.Members, r.Key, r.API, r.Sees)
	}
	if err := tw.Flush(); err != nil {
		return wrapWrite(err)
	}
	_, err := fmt.Fprintf(w, "Keeping VIPs through an API server outage: %s\n", keeping)
	return wrapWrite(err)
}

// memberRow is one line of the MEMBERS table.
type memberRow struct{ Node, Members, Key, API, Sees string }

// memberRows describes each agent's record, by node, and says whether
// keeping is on: every agent with members on and one key fingerprint.
func memberRows(records map[string]nodestatus.MembersRecord) (rows []memberRow, keeping string) {
	keys := map[string]bool{}
	var off []string
	for _, name := range slices.Sorted(maps.Keys(records)) {
		r := records[name]
		switch {
		case r.Err != nil:
			rows = append(rows, memberRow{name, "unknown", "-", "-", r.Err.Error()})
			off = append(off, name)
			continue
		case !r.OK || !r.On:
			rows = append(rows, memberRow{name, "off", "-", "-", "-"})
			off = append(off, name)
			continue
		}
		keys[r.Key] = true
		rows = append(rows, memberRow{name, "on", r.Key, apiWord(r.API), seesText(r.Seen)})
	}
	switch {
	case len(off) > 0:
		keeping = "off (without members: " + strings.Join(off, ", ") + ")"
	case len(keys) > 1:
		keeping = "off (the agents have different keys)"
	default:
		keeping = "on"
	}
	return rows, keeping
}

func apiWord(reachable bool) string {
	if reachable {
		return "reachable"
	}
	return "away"
}

// seesText lists the agents one agent hears and their view of the API.
func seesText(seen []nodestatus.SeenMember) string {
	if len(seen) == 0 {
		return "-"
	}
	parts := make([]string, len(seen))
	for i, s := range seen {
		parts[i] = s.Node + " (API " + apiWord(s.API) + ")"
	}
	return strings.Join(parts, ", ")
}

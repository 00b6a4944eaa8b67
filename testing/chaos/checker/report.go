package checker

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Run describes one campaign for its report.
type Run struct {
	Seed     int64
	Nodes    int
	Services int
	Mode     string // election mode and other settings of the run
	Started  time.Time
	Duration time.Duration
	Replay   string // the command that replays it
}

// Percentiles of a distribution (nearest rank).
type Percentiles struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// Distribution summarises ds.
func Distribution(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(i, 0)]
	}
	return Percentiles{N: len(s), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: s[len(s)-1]}
}

// Report renders the campaign's Markdown report: faults by kind, violations
// by kind with their times, answer gaps per fault kind, and the seed.
func Report(r Run, faults map[string]int, vs []Violation, gaps []Gap) string {
	var b strings.Builder
	verdict := "PASS: no violation"
	if len(vs) > 0 {
		verdict = fmt.Sprintf("FAIL: %d violation(s)", len(vs))
	}
	fmt.Fprintf(&b, "# Fault campaign report\n\n%s.\n\n", verdict)
	fmt.Fprintf(&b, "- seed: `%d` (replay: `%s`)\n- started: %s, ran %v\n- nodes: %d, Services: %d\n- mode: %s\n\n",
		r.Seed, r.Replay, r.Started.UTC().Format(time.RFC3339), r.Duration.Round(time.Second), r.Nodes, r.Services, r.Mode)
	writeFaults(&b, faults)
	writeViolations(&b, vs)
	writeGaps(&b, gaps)
	return b.String()
}

func writeFaults(b *strings.Builder, faults map[string]int) {
	b.WriteString("## Faults injected\n\n| kind | count |\n| --- | ---: |\n")
	total := 0
	for _, k := range sortedKeys(faults) {
		fmt.Fprintf(b, "| %s | %d |\n", k, faults[k])
		total += faults[k]
	}
	fmt.Fprintf(b, "| **total** | %d |\n\n", total)
}

func writeViolations(b *strings.Builder, vs []Violation) {
	b.WriteString("## Violations\n\n")
	if len(vs) == 0 {
		b.WriteString("None.\n\n")
		return
	}
	byKind := map[string]int{}
	for _, v := range vs {
		byKind[string(v.Kind)]++
	}
	b.WriteString("| kind | count |\n| --- | ---: |\n")
	for _, k := range sortedKeys(byKind) {
		fmt.Fprintf(b, "| %s | %d |\n", k, byKind[k])
	}
	b.WriteString("\n")
	for _, v := range vs {
		fmt.Fprintf(b, "- %s\n", v)
	}
	b.WriteString("\n")
}

func writeGaps(b *strings.Builder, gaps []Gap) {
	b.WriteString("## Failover: time a VIP went unanswered, by the fault blamed\n\n")
	b.WriteString("A gap is the time between the last ARP/NDP answer before a silence of more than the answer window and the first after it.\n\n")
	b.WriteString("| fault kind | gaps | p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: |\n")
	by := map[string][]time.Duration{}
	for _, g := range gaps {
		by[g.FaultKind] = append(by[g.FaultKind], g.Length)
	}
	for _, k := range sortedKeys(by) {
		p := Distribution(by[k])
		fmt.Fprintf(b, "| %s | %d | %v | %v | %v |\n", k, p.N, ms(p.P50), ms(p.P99), ms(p.Max))
	}
	b.WriteString("\n")
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

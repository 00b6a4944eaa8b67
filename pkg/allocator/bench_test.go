package allocator_test

import (
	"fmt"
	"testing"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

func benchAllocator(b *testing.B, entries ...string) *allocator.Allocator {
	b.Helper()
	a, err := allocator.New([]allocator.Pool{auto("p", entries...)})
	if err != nil {
		b.Fatal(err)
	}
	return a
}

func benchRequests(n int, fam allocator.Family) []allocator.Request {
	reqs := make([]allocator.Request, n)
	for i := range reqs {
		reqs[i] = allocator.Request{Owner: fmt.Sprintf("ns/svc-%d", i), Namespace: "ns", Families: []allocator.Family{fam}}
	}
	return reqs
}

// cycle assigns every request, then releases every owner.
func cycle(b *testing.B, a *allocator.Allocator, reqs []allocator.Request) {
	for _, r := range reqs {
		if _, err := a.Assign(r); err != nil {
			b.Fatal(err)
		}
	}
	for _, r := range reqs {
		a.Release(r.Owner)
	}
}

// BenchmarkAssignRelease: one op is 10,000 Assigns followed by 10,000
// Releases.
func BenchmarkAssignRelease(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cidr  string
		fam   allocator.Family
		avoid bool
	}{
		{"v4-slash16", "10.1.0.0/16", allocator.IPv4, false},
		{"v4-slash16-avoid-buggy", "10.1.0.0/16", allocator.IPv4, true},
		{"v6-slash64", "fd00::/64", allocator.IPv6, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a, err := allocator.New([]allocator.Pool{{Name: "p", AutoAssign: true, AvoidBuggyIPs: bc.avoid, Ranges: ranges(bc.cidr)}})
			if err != nil {
				b.Fatal(err)
			}
			reqs := benchRequests(10_000, bc.fam)
			b.ReportAllocs()
			for b.Loop() {
				cycle(b, a, reqs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20_000, "ns/call")
		})
	}
}

// BenchmarkPoolSize runs the same work (fill 16 addresses, release them)
// on pools from a /28 to a /32 of IPv6: the cost must not grow with the
// pool.
func BenchmarkPoolSize(b *testing.B) {
	for _, bc := range []struct {
		name string
		cidr string
		fam  allocator.Family
	}{
		{"v4-slash28", "10.1.0.0/28", allocator.IPv4},
		{"v4-slash16", "10.1.0.0/16", allocator.IPv4},
		{"v4-slash8", "10.0.0.0/8", allocator.IPv4},
		{"v6-slash124", "fd00::/124", allocator.IPv6},
		{"v6-slash64", "fd00::/64", allocator.IPv6},
		{"v6-slash32", "fd00::/32", allocator.IPv6},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := benchAllocator(b, bc.cidr)
			reqs := benchRequests(16, bc.fam)
			b.ReportAllocs()
			for b.Loop() {
				cycle(b, a, reqs)
			}
		})
	}
}

// BenchmarkFragmented: 10,000 addresses held, every other one released
// (5,000 runs of used addresses), then one Assign and one Release per op.
func BenchmarkFragmented(b *testing.B) {
	for _, bc := range []struct {
		name string
		cidr string
		fam  allocator.Family
	}{
		{"v4-slash16", "10.1.0.0/16", allocator.IPv4},
		{"v6-slash64", "fd00::/64", allocator.IPv6},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := benchAllocator(b, bc.cidr)
			reqs := benchRequests(10_001, bc.fam)
			for _, r := range reqs[:10_000] {
				if _, err := a.Assign(r); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; i < 10_000; i += 2 {
				a.Release(reqs[i].Owner)
			}
			last := reqs[10_000]
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Assign(last); err != nil {
					b.Fatal(err)
				}
				a.Release(last.Owner)
			}
		})
	}
}

// BenchmarkStats: Stats of a /64 and a /16 with 10,000 addresses held.
func BenchmarkStats(b *testing.B) {
	a, err := allocator.New([]allocator.Pool{auto("v4", "10.1.0.0/16"), auto("v6", "fd00::/64")})
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range benchRequests(10_000, allocator.IPv4) {
		r.Families = []allocator.Family{allocator.IPv4, allocator.IPv6}
		r.Policy = allocator.RequireDualStack
		if _, err := a.Assign(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		a.Stats()
	}
}

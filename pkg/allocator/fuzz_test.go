package allocator

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func FuzzParseRanges(f *testing.F) {
	for _, s := range []string{
		"192.168.10.0/24",
		"fc00:f853:ccd:e799::/124",
		"192.168.9.1-192.168.9.5",
		"fc00::1 - fc00::ff",
		"192.168.0.200/29,192.168.0.216/29",
		"192.168.0.210-192.168.0.219,192.168.0.230-192.168.0.239",
		"192.168.1.1/24",
		"::ffff:192.168.1.0/120",
		"fe80::1%eth0-fe80::2%eth0",
		"10.0.0.9-10.0.0.1",
		"10.0.0.0/8\n10.1.0.0/16",
		"0.0.0.0/0\n::/0",
		"255.255.255.255/32,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkRanges := func(name string, rs []Range, err error) {
			if err != nil {
				if !errors.Is(err, ErrInvalidRange) {
					t.Fatalf("%s(%q): error %v is not ErrInvalidRange", name, s, err)
				}
				var re *RangeError
				if !errors.As(err, &re) {
					t.Fatalf("%s(%q): error %v is not a *RangeError", name, s, err)
				}
				return
			}
			for _, r := range rs {
				if err := r.Validate(); err != nil {
					t.Fatalf("%s(%q) gave an invalid range: %v", name, s, err)
				}
				if !r.Start.IsValid() || r.Start.Is4() != r.End.Is4() || r.Start.Compare(r.End) > 0 || r.Start.Is4In6() || r.Start.Zone() != "" {
					t.Fatalf("%s(%q) gave %#v", name, s, r)
				}
				back, err := ParseRange(r.String())
				if err != nil || back != r {
					t.Fatalf("%s(%q): %v round-trips to %v, %v", name, s, r, back, err)
				}
				if p, ok := r.Prefix(); ok && RangeOf(p) != r {
					t.Fatalf("%s(%q): %v.Prefix() = %v", name, s, r, p)
				}
			}
			if err := checkOverlap(rs, nil); err != nil {
				t.Fatalf("%s(%q) gave overlapping ranges: %v", name, s, err)
			}
			strs := make([]string, len(rs))
			for i, r := range rs {
				strs[i] = r.String()
			}
			back, err := ParseList(strings.Join(strs, ","))
			if err != nil || !slices.Equal(back, rs) {
				t.Fatalf("%s(%q) = %v: joined it parses as %v, %v", name, s, rs, back, err)
			}
			p := Pool{Name: "p", Ranges: rs}
			if err := p.Validate(); err != nil {
				t.Fatalf("%s(%q): pool: %v", name, s, err)
			}
			p.Size()
		}
		rs, err := ParseRanges(strings.Split(s, "\n"))
		checkRanges("ParseRanges", rs, err)
		rs, err = ParseList(s)
		checkRanges("ParseList", rs, err)
		rs, err = ParseHostCIDRs(s)
		checkRanges("ParseHostCIDRs", rs, err)
	})
}

// The fuzzed allocator's universe: a few small, overlapping ranges around
// the interesting edges, and addresses in and around them.
var fuzzRanges = []string{
	"10.0.0.0/30",
	"10.0.0.2-10.0.0.9", // overlaps 0
	"10.0.0.254-10.0.1.2",
	"10.0.2.0/31",
	"fd00::/126",
	"fd00::2-fd00::5", // overlaps 4
	"fd00:1::/64",
	"255.255.255.254/31",
	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127",
}

var fuzzAddrs = []string{
	"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.9", "10.0.0.10",
	"10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1", "10.0.2.0", "10.0.2.1", "192.168.0.1",
	"255.255.255.255", "::ffff:10.0.0.1",
	"fd00::", "fd00::1", "fd00::3", "fd00::5", "fd00::6", "fd00:1::", "fd00:1::1",
	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fd99::1",
}

var fuzzOwners = []string{"a/0", "a/1", "a/2", "b/0", "b/1", "b/2"}

var fuzzPorts = []Port{{80, "TCP"}, {80, "udp"}, {443, ""}}

type fuzzReader struct{ data []byte }

func (r *fuzzReader) byte() byte {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *fuzzReader) pick(n int) int { return int(r.byte()) % n }

func (r *fuzzReader) addrs(n int) []netip.Addr {
	var out []netip.Addr
	for range r.pick(n + 1) {
		out = append(out, netip.MustParseAddr(fuzzAddrs[r.pick(len(fuzzAddrs))]))
	}
	return out
}

func (r *fuzzReader) sharing() (string, []Port) {
	key := []string{"", "k1", "k2"}[r.pick(3)]
	var ports []Port
	mask := r.byte()
	for i, p := range fuzzPorts {
		if mask&(1<<i) != 0 {
			ports = append(ports, p)
		}
	}
	return key, ports
}

func (r *fuzzReader) pools() []Pool {
	var out []Pool
	for i := range r.pick(5) {
		mask := uint16(r.byte()) | uint16(r.byte())<<8
		flags := r.byte()
		p := Pool{
			Name:          fmt.Sprintf("p%d", i),
			AutoAssign:    flags&1 != 0,
			AvoidBuggyIPs: flags&2 != 0,
			Namespaces:    [][]string{nil, {"a"}, {"b"}, {"a", "b"}}[flags>>2&3],
			Priority:      int(flags>>4) % 3,
		}
		for j, s := range fuzzRanges {
			if mask&(1<<j) != 0 && !(j == 1 && mask&1 != 0) && !(j == 5 && mask&(1<<4) != 0) {
				p.Ranges = append(p.Ranges, mustRange(s))
			}
		}
		if flags&0x80 != 0 { // reversed range order
			slices.Reverse(p.Ranges)
		}
		if mask&(1<<9) != 0 { // owners a/1 and b/1 have tier=gold
			p.ServiceSelectors = []LabelMatcher{fuzzMatch{"tier", "gold"}}
		}
		if mask&(1<<10) != 0 { // namespace b has team=x
			p.NamespaceSelectors = []LabelMatcher{fuzzMatch{"team", "x"}}
		}
		out = append(out, p)
	}
	if len(out) > 1 && r.byte()&0x0f == 0 {
		out[1].Name = out[0].Name // invalid: duplicate
	}
	return out
}

// fuzzMatch selects labels with key k of value v.
type fuzzMatch struct{ k, v string }

func (m fuzzMatch) Matches(labels map[string]string) bool { return labels[m.k] == m.v }

func mustRange(s string) Range {
	r, err := ParseRange(s)
	if err != nil {
		panic(err)
	}
	return r
}

func FuzzAllocator(f *testing.F) {
	f.Add([]byte{4, 3, 0x1f, 0, 0x41, 0xff, 0x01, 0x03, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 2, 1})
	f.Add([]byte{4, 2, 0x71, 0, 0x01, 0x8c, 0x01, 0x07, 0, 0, 2, 0, 0, 1, 1, 0, 4, 1, 1, 0, 2, 4, 1, 0, 3, 2, 1, 1, 0, 3, 3})
	f.Add([]byte{3, 0, 2, 5, 9, 1, 3, 1, 2, 1, 2, 7, 0, 0, 1, 0, 3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{4, 4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 5, 0, 2, 0, 1, 0, 1, 5, 1, 3, 1, 1, 2, 1, 5, 0, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzReader{data: data}
		pools := r.pools()
		a, err := New(pools)
		if err != nil {
			if !errors.Is(err, ErrInvalidPool) {
				t.Fatalf("New: %v", err)
			}
			pools = nil
			if a, err = New(nil); err != nil {
				t.Fatal(err)
			}
		}
		for step := 0; len(r.data) > 0 && step < 64; step++ {
			before := a.Assignments()
			var what string
			switch r.pick(5) {
			case 0, 1:
				req := fuzzRequest(r, pools)
				what = fmt.Sprintf("Assign(%+v)", req)
				prev, _ := a.Lookup(req.Owner)
				res, err := a.Assign(req)
				if err != nil {
					if !slices.EqualFunc(before, a.Assignments(), equalAssignment) {
						t.Fatalf("%s failed (%v) but changed state", what, err)
					}
					break
				}
				checkAssign(t, what, pools, req, prev, res)
				if got, _ := a.Lookup(req.Owner); !slices.Equal(got.Addrs, addrsOf(res)) {
					t.Fatalf("%s = %+v, but Lookup = %+v", what, res, got)
				}
				again, err := a.Assign(req)
				if err != nil || again.Changed || !slices.Equal(addrsOf(again), addrsOf(res)) {
					t.Fatalf("%s = %+v, again: %+v, %v", what, res, again, err)
				}
			case 2:
				owner := fuzzOwners[r.pick(len(fuzzOwners))]
				what = "Release(" + owner + ")"
				prev, _ := a.Lookup(owner)
				a.Release(owner)
				if _, ok := a.Lookup(owner); ok {
					t.Fatalf("%s: still holds", what)
				}
				for _, x := range prev.Addrs {
					if slices.Contains(a.Holders(x), owner) {
						t.Fatalf("%s: still holds %s", what, x)
					}
				}
			case 3:
				owner := fuzzOwners[r.pick(len(fuzzOwners))]
				addrs := r.addrs(4) // several of one family, too
				key, ports := r.sharing()
				what = fmt.Sprintf("Restore(%s, %v, %q, %v)", owner, addrs, key, ports)
				if err := a.Restore(owner, addrs, key, ports); err != nil {
					if !errors.Is(err, ErrInUse) && !errors.Is(err, ErrInvalidRequest) {
						t.Fatalf("%s: %v", what, err)
					}
					if !slices.EqualFunc(before, a.Assignments(), equalAssignment) {
						t.Fatalf("%s failed (%v) but changed state", what, err)
					}
					break
				}
				got, ok := a.Lookup(owner)
				var want []netip.Addr
				for _, x := range addrs {
					if x = x.Unmap(); !slices.Contains(want, x) {
						want = append(want, x)
					}
				}
				if ok != (len(want) > 0) || !slices.Equal(got.Addrs, want) {
					t.Fatalf("%s: Lookup = %+v, %v", what, got, ok)
				}
			case 4:
				next := r.pools()
				what = fmt.Sprintf("SetPools(%+v)", next)
				if err := a.SetPools(next); err != nil {
					if !errors.Is(err, ErrInvalidPool) {
						t.Fatalf("%s: %v", what, err)
					}
				} else {
					pools = next
				}
				if !slices.EqualFunc(before, a.Assignments(), equalAssignment) {
					t.Fatalf("%s changed assignments", what)
				}
			}
			if err := a.check(); err != nil {
				t.Fatalf("after %s: %v", what, err)
			}
			checkStats(t, what, a, pools)
			checkOrphans(t, what, a, pools)
		}
	})
}

func fuzzRequest(r *fuzzReader, pools []Pool) Request {
	owner := fuzzOwners[r.pick(len(fuzzOwners))]
	req := Request{Owner: owner, Namespace: owner[:1]}
	if owner[2:] == "1" {
		req.Labels = map[string]string{"tier": "gold"}
	}
	if req.Namespace == "b" {
		req.NamespaceLabels = map[string]string{"team": "x"}
	}
	switch r.pick(6) {
	case 0:
		req.Families = []Family{IPv4}
	case 1:
		req.Families = []Family{IPv6}
	case 2:
		req.Families, req.Policy = []Family{IPv4, IPv6}, RequireDualStack
	case 3:
		req.Families, req.Policy = []Family{IPv6, IPv4}, RequireDualStack
	case 4:
		req.Families, req.Policy = []Family{IPv4, IPv6}, PreferDualStack
	case 5:
		req.Families, req.Policy = []Family{IPv6, IPv4}, PreferDualStack
	}
	if n := r.pick(len(pools) + 3); n < len(pools) {
		req.Pool = pools[n].Name
	} else if n == len(pools) {
		req.Pool = "nope"
	}
	req.Requested = r.addrs(3) // several of one family, too
	req.SharingKey, req.Ports = r.sharing()
	return req
}

func addrsOf(res Result) []netip.Addr {
	var out []netip.Addr
	for _, x := range res.Addrs {
		out = append(out, x.Addr)
	}
	return out
}

func equalAssignment(x, y Assignment) bool {
	return x.Owner == y.Owner && x.Namespace == y.Namespace && slices.Equal(x.Addrs, y.Addrs) &&
		x.SharingKey == y.SharingKey && slices.Equal(x.Ports, y.Ports)
}

// checkAssign checks a successful Assign against the request and the pools
// in force: families, requested addresses, and that every address the
// owner did not hold before comes from a pool that may hand it out.
func checkAssign(t *testing.T, what string, pools []Pool, req Request, prev Assignment, res Result) {
	t.Helper()
	got := map[Family][]netip.Addr{}
	for _, x := range res.Addrs {
		f := FamilyOf(x.Addr)
		if !slices.Contains(req.Families, f) || slices.Contains(got[f], x.Addr) {
			t.Fatalf("%s = %+v: unwanted family or duplicate", what, res)
		}
		got[f] = append(got[f], x.Addr)
	}
	want := map[Family][]netip.Addr{}
	var requested []netip.Addr
	for _, x := range req.Requested {
		if x = x.Unmap(); !slices.Contains(want[FamilyOf(x)], x) {
			want[FamilyOf(x)] = append(want[FamilyOf(x)], x)
			requested = append(requested, x)
		}
	}
	for i, f := range req.Families {
		have := len(got[f]) > 0
		required := i == 0 || req.Policy == RequireDualStack
		if !have && (required || !slices.Contains(res.Missing, f)) {
			t.Fatalf("%s = %+v: no %s", what, res, f)
		}
		if have && slices.Contains(res.Missing, f) {
			t.Fatalf("%s = %+v: %s both there and missing", what, res, f)
		}
		// Exactly the requested addresses of a family, in order; else one.
		if w := want[f]; len(w) > 0 && !slices.Equal(got[f], w) || len(w) == 0 && len(got[f]) > 1 {
			t.Fatalf("%s = %+v: %s addresses %v, requested %v", what, res, f, got[f], w)
		}
	}
	for _, x := range res.Addrs {
		if slices.Contains(prev.Addrs, x.Addr) {
			continue // kept
		}
		ok := false
		for _, p := range pools {
			offered := false
			for _, rg := range p.Ranges {
				offered = offered || rg.Contains(x.Addr)
			}
			if p.AvoidBuggyIPs && x.Addr.Is4() && buggy(u128From(x.Addr)) {
				offered = false
			}
			if !offered || !p.Serves(req) {
				continue
			}
			if req.Pool != "" && p.Name != req.Pool {
				continue
			}
			if req.Pool == "" && !p.AutoAssign && !slices.Contains(requested, x.Addr) {
				continue
			}
			ok = true
		}
		if !ok {
			t.Fatalf("%s = %+v: %s is not from a pool that may hand it out (%+v)", what, res, x.Addr, pools)
		}
		if x.Pool == "" {
			t.Fatalf("%s = %+v: new address without a pool", what, res)
		}
	}
}

// checkStats recounts Stats from Assignments and the pools, with big
// integers and by enumerating IPv4 ranges (which are small here).
func checkStats(t *testing.T, what string, a *Allocator, pools []Pool) {
	t.Helper()
	held := map[netip.Addr]bool{}
	for _, as := range a.Assignments() {
		for _, x := range as.Addrs {
			held[x] = true
		}
	}
	stats := a.Stats()
	if len(stats) != len(pools) {
		t.Fatalf("after %s: Stats has %d pools, want %d", what, len(stats), len(pools))
	}
	sat := func(n *big.Int) uint64 {
		if !n.IsUint64() {
			return math.MaxUint64
		}
		return n.Uint64()
	}
	for _, p := range pools {
		var used, usable [2]uint64
		total := [2]*big.Int{new(big.Int), new(big.Int)}
		for _, rg := range p.Ranges {
			if rg.Start.Is4() {
				for x := rg.Start; x.IsValid() && x.Compare(rg.End) <= 0; x = x.Next() {
					if !p.AvoidBuggyIPs || x.As4()[3]%255 != 0 {
						total[0].Add(total[0], big.NewInt(1))
					}
				}
				continue
			}
			s, e := rg.Start.As16(), rg.End.As16()
			n := new(big.Int).Sub(new(big.Int).SetBytes(e[:]), new(big.Int).SetBytes(s[:]))
			total[1].Add(total[1], n.Add(n, big.NewInt(1)))
		}
		for x := range held {
			in := false
			for _, rg := range p.Ranges {
				in = in || rg.Contains(x)
			}
			if !in {
				continue
			}
			f := famIdx(FamilyOf(x))
			used[f]++
			if !(p.AvoidBuggyIPs && x.Is4() && x.As4()[3]%255 == 0) {
				usable[f]++
			}
		}
		var want PoolStats
		for f, c := range []*Counts{&want.IPv4, &want.IPv6} {
			free := new(big.Int).Sub(total[f], new(big.Int).SetUint64(usable[f]))
			*c = Counts{Total: sat(total[f]), Used: used[f], Free: sat(free)}
		}
		if got := stats[p.Name]; got != want {
			t.Fatalf("after %s: Stats[%s] = %+v, recount %+v", what, p.Name, got, want)
		}
		if t4, t6 := p.Size(); t4 != want.IPv4.Total || t6 != want.IPv6.Total {
			t.Fatalf("after %s: %s.Size() = %d, %d; recount %+v", what, p.Name, t4, t6, want)
		}
	}
}

func checkOrphans(t *testing.T, what string, a *Allocator, pools []Pool) {
	t.Helper()
	var want []Orphan
	for _, as := range a.Assignments() {
		for _, x := range as.Addrs {
			in := false
			for _, p := range pools {
				for _, rg := range p.Ranges {
					in = in || rg.Contains(x)
				}
			}
			if !in {
				want = append(want, Orphan{as.Owner, x})
			}
		}
	}
	slices.SortFunc(want, func(x, y Orphan) int {
		if c := strings.Compare(x.Owner, y.Owner); c != 0 {
			return c
		}
		return x.Addr.Compare(y.Addr)
	})
	if got := a.Orphans(); !slices.Equal(got, want) {
		t.Fatalf("after %s: Orphans = %v, want %v", what, got, want)
	}
}

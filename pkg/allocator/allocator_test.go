package allocator_test

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-lb/vigil/pkg/allocator"
)

const (
	v4 = allocator.IPv4
	v6 = allocator.IPv6
)

// ranges parses pool entries or panics.
func ranges(entries ...string) []allocator.Range {
	rs, err := allocator.ParseRanges(entries)
	if err != nil {
		panic(err)
	}
	return rs
}

// auto is an AutoAssign pool.
func auto(name string, entries ...string) allocator.Pool {
	return allocator.Pool{Name: name, Ranges: ranges(entries...), AutoAssign: true}
}

// rb builds a Request.
type rb struct{ r allocator.Request }

// req is a request of owner "ns/name" in namespace ns; two families mean
// RequireDualStack.
func req(owner string, fams ...allocator.Family) rb {
	if len(fams) == 0 {
		fams = []allocator.Family{v4}
	}
	ns, _, _ := strings.Cut(owner, "/")
	b := rb{allocator.Request{Owner: owner, Namespace: ns, Families: fams}}
	if len(fams) == 2 {
		b.r.Policy = allocator.RequireDualStack
	}
	return b
}

func (b rb) pool(p string) rb                     { b.r.Pool = p; return b }
func (b rb) policy(p allocator.FamilyPolicy) rb   { b.r.Policy = p; return b }
func (b rb) families(fams ...allocator.Family) rb { b.r.Families = fams; return b }
func (b rb) ns(ns string) rb                      { b.r.Namespace = ns; return b }
func (b rb) p() *allocator.Request                { return &b.r }
func (b rb) ask(addrs ...string) rb {
	b.r.Requested = nil
	for _, a := range addrs {
		b.r.Requested = append(b.r.Requested, netip.MustParseAddr(a))
	}
	return b
}

// share sets the sharing key and ports ("80/TCP", "53/udp", "8080").
func (b rb) share(key string, ports ...string) rb {
	b.r.SharingKey = key
	b.r.Ports = parsePorts(ports)
	return b
}

func parsePorts(ports []string) []allocator.Port {
	var out []allocator.Port
	for _, p := range ports {
		n, proto, _ := strings.Cut(p, "/")
		i, err := strconv.Atoi(n)
		if err != nil {
			panic(err)
		}
		out = append(out, allocator.Port{Port: i, Protocol: proto})
	}
	return out
}

// step is one call in a scenario: exactly one of assign, release, restore
// and pools is set.
type step struct {
	assign  *allocator.Request
	release string
	restore *restore
	pools   []allocator.Pool

	want    []string // Assign: "addr pool" per address ("addr" alone if in no pool)
	missing []allocator.Family
	changed bool
	err     error  // errors.Is
	msg     string // substring of the error
}

type restore struct {
	owner string
	addrs []string
	key   string
	ports []string
}

func (s step) String() string {
	switch {
	case s.assign != nil:
		return fmt.Sprintf("Assign(%+v)", *s.assign)
	case s.release != "":
		return fmt.Sprintf("Release(%s)", s.release)
	case s.restore != nil:
		return fmt.Sprintf("Restore(%+v)", *s.restore)
	}
	return "SetPools"
}

// holdings lists every assignment as "owner addr...".
func holdings(a *allocator.Allocator) []string {
	out := []string{}
	for _, as := range a.Assignments() {
		s := as.Owner
		for _, x := range as.Addrs {
			s += " " + x.String()
		}
		out = append(out, s)
	}
	return out
}

// runSteps runs steps in order on a new allocator over pools.
func runSteps(t *testing.T, pools []allocator.Pool, steps []step) *allocator.Allocator {
	t.Helper()
	a, err := allocator.New(pools)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		s.run(t, a)
	}
	return a
}

func (s step) run(t *testing.T, a *allocator.Allocator) {
	t.Helper()
	var err error
	switch {
	case s.assign != nil:
		var res allocator.Result
		res, err = a.Assign(*s.assign)
		if err == nil && s.err == nil {
			var got []string
			for _, x := range res.Addrs {
				got = append(got, strings.TrimSpace(x.Addr.String()+" "+x.Pool))
			}
			if diff := cmp.Diff(s.want, got); diff != "" {
				t.Errorf("%v: addresses (-want +got):\n%s", s, diff)
			}
			if diff := cmp.Diff(s.missing, res.Missing); diff != "" {
				t.Errorf("%v: missing (-want +got):\n%s", s, diff)
			}
			if res.Changed != s.changed {
				t.Errorf("%v: Changed = %v, want %v", s, res.Changed, s.changed)
			}
		}
	case s.release != "":
		a.Release(s.release)
	case s.restore != nil:
		var addrs []netip.Addr
		for _, x := range s.restore.addrs {
			addrs = append(addrs, netip.MustParseAddr(x))
		}
		err = a.Restore(s.restore.owner, addrs, s.restore.key, parsePorts(s.restore.ports))
	default:
		err = a.SetPools(s.pools)
	}
	switch {
	case s.err == nil && err != nil:
		t.Fatalf("%v: %v", s, err)
	case s.err != nil && !errors.Is(err, s.err):
		t.Fatalf("%v: error %v, want %v", s, err, s.err)
	case s.err != nil && !strings.Contains(err.Error(), s.msg):
		t.Errorf("%v: error %q does not contain %q", s, err, s.msg)
	}
}

func TestAssign(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pools []allocator.Pool
		steps []step
		// after the steps: every assignment as "owner addr addr", and Orphans
		holding []string
		orphans []string
	}{
		{
			name:  "first free, idempotent, release reuses",
			pools: []allocator.Pool{auto("p", "10.0.0.0/30")},
			steps: []step{
				{assign: req("ns/a").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{assign: req("ns/b").p(), want: []string{"10.0.0.1 p"}, changed: true},
				{assign: req("ns/a").p(), want: []string{"10.0.0.0 p"}},
				{release: "ns/a"},
				{release: "ns/nobody"},
				{assign: req("ns/c").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{assign: req("ns/d").p(), want: []string{"10.0.0.2 p"}, changed: true},
				{assign: req("ns/e").p(), want: []string{"10.0.0.3 p"}, changed: true},
				{assign: req("ns/f").p(), err: allocator.ErrExhausted, msg: "no free IPv4 address in pools p"},
				{assign: req("ns/e").p(), want: []string{"10.0.0.3 p"}},
			},
			holding: []string{"ns/b 10.0.0.1", "ns/c 10.0.0.0", "ns/d 10.0.0.2", "ns/e 10.0.0.3"},
		},
		{
			name: "avoid buggy IPs across a /24 boundary",
			pools: []allocator.Pool{{
				Name: "p", AutoAssign: true, AvoidBuggyIPs: true,
				Ranges: ranges("192.168.0.254-192.168.1.1", "192.168.2.255/32"),
			}},
			steps: []step{
				{assign: req("ns/a").p(), want: []string{"192.168.0.254 p"}, changed: true},
				{assign: req("ns/b").p(), want: []string{"192.168.1.1 p"}, changed: true},
				{assign: req("ns/c").p(), err: allocator.ErrExhausted},
				{assign: req("ns/c").ask("192.168.1.0").p(), err: allocator.ErrNotInPool, msg: "192.168.1.0 is not in any pool"},
				{assign: req("ns/c").pool("p").ask("192.168.2.255").p(), err: allocator.ErrNotInPool, msg: `not in pool "p" (it avoids addresses ending in .0 and .255)`},
			},
			holding: []string{"ns/a 192.168.0.254", "ns/b 192.168.1.1"},
		},
		{
			name: "ranges in the order given",
			pools: []allocator.Pool{
				auto("p", "10.0.9.0/31", "10.0.1.0/31"),
			},
			steps: []step{
				{assign: req("ns/a").p(), want: []string{"10.0.9.0 p"}, changed: true},
				{assign: req("ns/b").p(), want: []string{"10.0.9.1 p"}, changed: true},
				{assign: req("ns/c").p(), want: []string{"10.0.1.0 p"}, changed: true},
			},
			holding: []string{"ns/a 10.0.9.0", "ns/b 10.0.9.1", "ns/c 10.0.1.0"},
		},
		{
			name: "namespace scoping",
			pools: []allocator.Pool{
				{Name: "prod", AutoAssign: true, Namespaces: []string{"prod", "stage"}, Ranges: ranges("10.0.1.0/30")},
				{Name: "shared", AutoAssign: true, Priority: 1, Ranges: ranges("10.0.2.0/30")},
				{Name: "team", AutoAssign: true, Namespaces: []string{"team"}, Ranges: ranges("10.0.3.0/30")},
			},
			steps: []step{
				{assign: req("prod/a").p(), want: []string{"10.0.1.0 prod"}, changed: true},
				{assign: req("dev/a").p(), want: []string{"10.0.2.0 shared"}, changed: true},
				{assign: req("dev/b").pool("prod").p(), err: allocator.ErrPoolNotAllowed, msg: `pool "prod" does not serve namespace "dev"`},
				{assign: req("dev/b").ask("10.0.1.3").p(), err: allocator.ErrPoolNotAllowed, msg: `10.0.1.3 is in pool prod, which does not serve namespace "dev"`},
				{assign: req("stage/b").ask("10.0.1.3").p(), want: []string{"10.0.1.3 prod"}, changed: true},
				{assign: req("team/a").p(), want: []string{"10.0.3.0 team"}, changed: true},
			},
			holding: []string{"dev/a 10.0.2.0", "prod/a 10.0.1.0", "stage/b 10.0.1.3", "team/a 10.0.3.0"},
		},
		{
			name: "no pool for the namespace",
			pools: []allocator.Pool{
				{Name: "prod", AutoAssign: true, Namespaces: []string{"prod"}, Ranges: ranges("10.0.1.0/30")},
				{Name: "manual", Ranges: ranges("10.0.2.0/30")},
			},
			steps: []step{
				{assign: req("dev/a").p(), err: allocator.ErrNoPool, msg: `namespace "dev"`},
				{assign: req("dev/a").pool("manual").p(), want: []string{"10.0.2.0 manual"}, changed: true},
			},
			holding: []string{"dev/a 10.0.2.0"},
		},
		{
			name: "autoAssign false only when named or requested",
			pools: []allocator.Pool{
				{Name: "manual", Priority: -1, Ranges: ranges("10.0.9.0/30")},
				auto("auto", "10.0.1.0/30"),
			},
			steps: []step{
				{assign: req("ns/a").p(), want: []string{"10.0.1.0 auto"}, changed: true},
				{assign: req("ns/b").pool("manual").p(), want: []string{"10.0.9.0 manual"}, changed: true},
				{assign: req("ns/c").ask("10.0.9.2").p(), want: []string{"10.0.9.2 manual"}, changed: true},
				// Dropping the pool annotation does not move it.
				{assign: req("ns/b").p(), want: []string{"10.0.9.0 manual"}},
				{assign: req("ns/d").p(), want: []string{"10.0.1.1 auto"}, changed: true},
			},
			holding: []string{"ns/a 10.0.1.0", "ns/b 10.0.9.0", "ns/c 10.0.9.2", "ns/d 10.0.1.1"},
		},
		{
			name: "priority then name",
			pools: []allocator.Pool{
				{Name: "late", AutoAssign: true, Priority: 10, Ranges: ranges("10.0.3.0/31")},
				{Name: "b", AutoAssign: true, Ranges: ranges("10.0.2.0/32")},
				{Name: "a", AutoAssign: true, Ranges: ranges("10.0.1.0/32")},
				{Name: "first", AutoAssign: true, Priority: -5, Ranges: ranges("10.0.0.0/32")},
			},
			steps: []step{
				{assign: req("ns/1").p(), want: []string{"10.0.0.0 first"}, changed: true},
				{assign: req("ns/2").p(), want: []string{"10.0.1.0 a"}, changed: true},
				{assign: req("ns/3").p(), want: []string{"10.0.2.0 b"}, changed: true},
				{assign: req("ns/4").p(), want: []string{"10.0.3.0 late"}, changed: true},
				{assign: req("ns/5").p(), want: []string{"10.0.3.1 late"}, changed: true},
				{assign: req("ns/6").p(), err: allocator.ErrExhausted, msg: "no free IPv4 address in pools first, a, b, late"},
			},
			holding: []string{"ns/1 10.0.0.0", "ns/2 10.0.1.0", "ns/3 10.0.2.0", "ns/4 10.0.3.0", "ns/5 10.0.3.1"},
		},
		{
			name: "explicit pool",
			pools: []allocator.Pool{
				auto("a", "10.0.1.0/31"),
				auto("b", "10.0.2.0/32"),
			},
			steps: []step{
				{assign: req("ns/x").pool("nope").p(), err: allocator.ErrNoSuchPool, msg: `"nope"`},
				{assign: req("ns/x").pool("b").p(), want: []string{"10.0.2.0 b"}, changed: true},
				{assign: req("ns/y").pool("b").p(), err: allocator.ErrExhausted, msg: "pools b"},
				// Switching the pool moves the address; so does asking for
				// one outside the named pool fail.
				{assign: req("ns/x").pool("a").p(), want: []string{"10.0.1.0 a"}, changed: true},
				{assign: req("ns/y").pool("b").p(), want: []string{"10.0.2.0 b"}, changed: true},
				{assign: req("ns/z").pool("a").ask("10.0.2.0").p(), err: allocator.ErrNotInPool, msg: `10.0.2.0 is not in pool "a"`},
			},
			holding: []string{"ns/x 10.0.1.0", "ns/y 10.0.2.0"},
		},
		{
			name:  "requested addresses",
			pools: []allocator.Pool{auto("p", "10.0.0.0/24")},
			steps: []step{
				{assign: req("ns/a").ask("10.0.0.7").p(), want: []string{"10.0.0.7 p"}, changed: true},
				{assign: req("ns/a").ask("10.0.0.7").p(), want: []string{"10.0.0.7 p"}},
				{assign: req("ns/b").ask("10.0.1.7").p(), err: allocator.ErrNotInPool, msg: "10.0.1.7 is not in any pool"},
				{assign: req("ns/b").ask("10.0.0.7").p(), err: allocator.ErrInUse, msg: "address 10.0.0.7 is in use by ns/a: the request has no sharing key"},
				{assign: req("ns/b").ask("::ffff:10.0.0.8").p(), want: []string{"10.0.0.8 p"}, changed: true},
				// Changing the requested address moves; the old one is free.
				{assign: req("ns/a").ask("10.0.0.9").p(), want: []string{"10.0.0.9 p"}, changed: true},
				{assign: req("ns/c").ask("10.0.0.7").p(), want: []string{"10.0.0.7 p"}, changed: true},
				// Dropping the request keeps the address.
				{assign: req("ns/c").p(), want: []string{"10.0.0.7 p"}},
				{assign: req("ns/d").p(), want: []string{"10.0.0.0 p"}, changed: true},
			},
			holding: []string{"ns/a 10.0.0.9", "ns/b 10.0.0.8", "ns/c 10.0.0.7", "ns/d 10.0.0.0"},
		},
		{
			name:  "sharing a requested address",
			pools: []allocator.Pool{auto("p", "10.0.0.0/24")},
			steps: []step{
				{assign: req("ns/dns-tcp").ask("10.0.0.53").share("dns", "53/TCP").p(), want: []string{"10.0.0.53 p"}, changed: true},
				{assign: req("ns/dns-udp").ask("10.0.0.53").share("dns", "53/udp").p(), want: []string{"10.0.0.53 p"}, changed: true},
				{assign: req("ns/web").ask("10.0.0.53").share("dns", "80").p(), want: []string{"10.0.0.53 p"}, changed: true},
				{assign: req("ns/other").ask("10.0.0.53").share("dns", "53").p(), err: allocator.ErrInUse, msg: "port 53/TCP collides with ns/dns-tcp"},
				{assign: req("ns/other").ask("10.0.0.53").share("web", "9999").p(), err: allocator.ErrInUse, msg: `shared under key "dns", not "web"`},
				{assign: req("ns/other").ask("10.0.0.53").p(), err: allocator.ErrInUse, msg: "in use by ns/dns-tcp, ns/dns-udp, ns/web: the request has no sharing key"},
				{release: "ns/dns-tcp"},
				{assign: req("ns/other").ask("10.0.0.53").share("dns", "53").p(), want: []string{"10.0.0.53 p"}, changed: true},
			},
			holding: []string{"ns/dns-udp 10.0.0.53", "ns/other 10.0.0.53", "ns/web 10.0.0.53"},
		},
		{
			name:  "no sharing without a key on both sides",
			pools: []allocator.Pool{auto("p", "10.0.0.0/24")},
			steps: []step{
				{assign: req("ns/a").ask("10.0.0.5").p(), want: []string{"10.0.0.5 p"}, changed: true},
				{assign: req("ns/b").ask("10.0.0.5").share("k", "80").p(), err: allocator.ErrInUse, msg: "its holders do not share it (no sharing key)"},
			},
			holding: []string{"ns/a 10.0.0.5"},
		},
		{
			name:  "auto assignment with a sharing key joins the key's address",
			pools: []allocator.Pool{auto("p", "10.0.0.0/24")},
			steps: []step{
				{assign: req("ns/x").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{assign: req("ns/tcp").share("dns", "53/TCP").p(), want: []string{"10.0.0.1 p"}, changed: true},
				{assign: req("ns/y").p(), want: []string{"10.0.0.2 p"}, changed: true},
				{release: "ns/x"},
				// 10.0.0.0 is free and lower, but the key's address wins.
				{assign: req("ns/udp").share("dns", "53/UDP").p(), want: []string{"10.0.0.1 p"}, changed: true},
				// Colliding ports: a free address instead.
				{assign: req("ns/tcp2").share("dns", "53/TCP").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{assign: req("ns/other").share("other", "53/TCP").p(), want: []string{"10.0.0.3 p"}, changed: true},
				// Changing ports to collide with a co-holder moves the owner.
				{assign: req("ns/udp").share("dns", "53/TCP").p(), want: []string{"10.0.0.4 p"}, changed: true},
			},
			holding: []string{"ns/other 10.0.0.3", "ns/tcp 10.0.0.1", "ns/tcp2 10.0.0.0", "ns/udp 10.0.0.4", "ns/y 10.0.0.2"},
		},
		{
			name:  "ports change to collide moves the owner, key change too",
			pools: []allocator.Pool{auto("p", "10.0.0.0/30")},
			steps: []step{
				{assign: req("ns/a").share("k", "80").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{assign: req("ns/b").share("k", "443").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{assign: req("ns/b").share("k", "80", "443").p(), want: []string{"10.0.0.1 p"}, changed: true},
				{assign: req("ns/b").share("k", "443").p(), want: []string{"10.0.0.1 p"}},
				// b alone holds .1: its key may change in place.
				{assign: req("ns/b").share("other", "443").p(), want: []string{"10.0.0.1 p"}},
				{assign: req("ns/c").share("k", "443").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{assign: req("ns/c").share("new", "443").p(), want: []string{"10.0.0.2 p"}, changed: true},
			},
			holding: []string{"ns/a 10.0.0.0", "ns/b 10.0.0.1", "ns/c 10.0.0.2"},
		},
		{
			name: "overlapping pools never hand out an address twice",
			pools: []allocator.Pool{
				auto("a", "10.0.0.0/30"),
				{Name: "b", AutoAssign: true, Priority: 1, Ranges: ranges("10.0.0.2-10.0.0.5")},
			},
			steps: []step{
				{assign: req("ns/1").p(), want: []string{"10.0.0.0 a"}, changed: true},
				{assign: req("ns/2").p(), want: []string{"10.0.0.1 a"}, changed: true},
				{assign: req("ns/3").p(), want: []string{"10.0.0.2 a"}, changed: true},
				{assign: req("ns/4").pool("b").p(), want: []string{"10.0.0.3 b"}, changed: true},
				{assign: req("ns/5").p(), want: []string{"10.0.0.4 b"}, changed: true},
				{assign: req("ns/6").pool("b").ask("10.0.0.2").p(), err: allocator.ErrInUse, msg: "in use by ns/3"},
			},
			holding: []string{"ns/1 10.0.0.0", "ns/2 10.0.0.1", "ns/3 10.0.0.2", "ns/4 10.0.0.3", "ns/5 10.0.0.4"},
		},
		{
			name: "dual-stack from one pool, even of lower priority",
			pools: []allocator.Pool{
				auto("v4only", "10.0.1.0/31"),
				auto("v6only", "fd00:1::/127"),
				{Name: "ds", AutoAssign: true, Priority: 1, Ranges: ranges("10.0.9.0/32", "fd00:9::/128")},
			},
			steps: []step{
				{assign: req("ns/a", v4, v6).p(), want: []string{"10.0.9.0 ds", "fd00:9:: ds"}, changed: true},
				// ds is full: each family from its own pool.
				{assign: req("ns/b", v6, v4).p(), want: []string{"fd00:1:: v6only", "10.0.1.0 v4only"}, changed: true},
				{assign: req("ns/c", v4).p(), want: []string{"10.0.1.1 v4only"}, changed: true},
				{assign: req("ns/d", v4, v6).p(), err: allocator.ErrExhausted, msg: "no free IPv4 address in pools v4only, v6only, ds"},
				{assign: req("ns/d", v4, v6).policy(allocator.PreferDualStack).p(), err: allocator.ErrExhausted},
				{assign: req("ns/d", v6, v4).policy(allocator.PreferDualStack).p(), want: []string{"fd00:1::1 v6only"}, missing: []allocator.Family{v4}, changed: true},
				{release: "ns/c"},
				// Tried again: the optional family arrives, the other stays.
				{assign: req("ns/d", v6, v4).policy(allocator.PreferDualStack).p(), want: []string{"fd00:1::1 v6only", "10.0.1.1 v4only"}, changed: true},
				{assign: req("ns/d", v6, v4).policy(allocator.PreferDualStack).p(), want: []string{"fd00:1::1 v6only", "10.0.1.1 v4only"}},
				// Dropping to single-stack frees the other family.
				{assign: req("ns/d", v6).p(), want: []string{"fd00:1::1 v6only"}, changed: true},
				{assign: req("ns/e", v4).p(), want: []string{"10.0.1.1 v4only"}, changed: true},
			},
			holding: []string{"ns/a 10.0.9.0 fd00:9::", "ns/b fd00:1:: 10.0.1.0", "ns/d fd00:1::1", "ns/e 10.0.1.1"},
		},
		{
			name: "dual-stack: the second family follows the first one's pool",
			pools: []allocator.Pool{
				auto("a", "10.0.1.0/24", "fd00:1::/120"),
				auto("b", "10.0.2.0/24", "fd00:2::/120"),
			},
			steps: []step{
				{assign: req("ns/x", v4).ask("10.0.2.9").p(), want: []string{"10.0.2.9 b"}, changed: true},
				{assign: req("ns/x", v4, v6).p(), want: []string{"10.0.2.9 b", "fd00:2:: b"}, changed: true},
				{assign: req("ns/y", v6, v4).ask("fd00:2::77").p(), want: []string{"fd00:2::77 b", "10.0.2.0 b"}, changed: true},
				{assign: req("ns/z", v4, v6).p(), want: []string{"10.0.1.0 a", "fd00:1:: a"}, changed: true},
			},
			holding: []string{"ns/x 10.0.2.9 fd00:2::", "ns/y fd00:2::77 10.0.2.0", "ns/z 10.0.1.0 fd00:1::"},
		},
		{
			name: "PreferDualStack without any IPv6 pool",
			pools: []allocator.Pool{
				auto("a", "10.0.1.0/24"),
			},
			steps: []step{
				{assign: req("ns/x", v4, v6).policy(allocator.PreferDualStack).p(), want: []string{"10.0.1.0 a"}, missing: []allocator.Family{v6}, changed: true},
				{assign: req("ns/x", v4, v6).policy(allocator.PreferDualStack).p(), want: []string{"10.0.1.0 a"}, missing: []allocator.Family{v6}},
				{pools: []allocator.Pool{auto("a", "10.0.1.0/24"), auto("six", "fd00::/64")}},
				{assign: req("ns/x", v4, v6).policy(allocator.PreferDualStack).p(), want: []string{"10.0.1.0 a", "fd00:: six"}, changed: true},
			},
			holding: []string{"ns/x 10.0.1.0 fd00::"},
		},
		{
			name: "PreferDualStack: optional family with no pool for the namespace",
			pools: []allocator.Pool{
				{Name: "manual", Ranges: ranges("10.0.1.0/24")},
			},
			steps: []step{
				{assign: req("ns/x", v4, v6).policy(allocator.PreferDualStack).ask("10.0.1.5").p(), want: []string{"10.0.1.5 manual"}, missing: []allocator.Family{v6}, changed: true},
				{assign: req("ns/y", v4, v6).ask("10.0.1.6").p(), err: allocator.ErrNoPool},
			},
			holding: []string{"ns/x 10.0.1.5"},
		},
		{
			name:  "shrinking a pool keeps live assignments",
			pools: []allocator.Pool{auto("p", "10.0.0.0/29")},
			steps: []step{
				{assign: req("ns/a").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{assign: req("ns/b").p(), want: []string{"10.0.0.1 p"}, changed: true},
				{assign: req("ns/c").ask("10.0.0.6").p(), want: []string{"10.0.0.6 p"}, changed: true},
				{pools: []allocator.Pool{auto("p", "10.0.0.1/32", "10.0.0.8/30")}},
				{assign: req("ns/a").p(), want: []string{"10.0.0.0"}},
				{assign: req("ns/a").pool("p").p(), want: []string{"10.0.0.0"}},
				{assign: req("ns/c").ask("10.0.0.6").p(), want: []string{"10.0.0.6"}},
				{assign: req("ns/d").ask("10.0.0.6").p(), err: allocator.ErrNotInPool},
				{assign: req("ns/d").p(), want: []string{"10.0.0.8 p"}, changed: true},
				// Growing it back: held addresses are still not handed out.
				{pools: []allocator.Pool{auto("p", "10.0.0.0/28")}},
				{assign: req("ns/e").p(), want: []string{"10.0.0.2 p"}, changed: true},
				{pools: []allocator.Pool{auto("p", "10.0.0.1/32", "10.0.0.8/30")}},
			},
			holding: []string{"ns/a 10.0.0.0", "ns/b 10.0.0.1", "ns/c 10.0.0.6", "ns/d 10.0.0.8", "ns/e 10.0.0.2"},
			orphans: []string{"ns/a 10.0.0.0", "ns/c 10.0.0.6", "ns/e 10.0.0.2"},
		},
		{
			name:  "namespace edits do not move assignments",
			pools: []allocator.Pool{auto("p", "10.0.0.0/29")},
			steps: []step{
				{assign: req("dev/a").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{pools: []allocator.Pool{{Name: "p", AutoAssign: true, Namespaces: []string{"prod"}, Ranges: ranges("10.0.0.0/29")}}},
				{assign: req("dev/a").p(), want: []string{"10.0.0.0 p"}},
				{assign: req("dev/b").p(), err: allocator.ErrNoPool},
			},
			holding: []string{"dev/a 10.0.0.0"},
		},
		{
			name: "a named pool that disappears or closes keeps what is held",
			pools: []allocator.Pool{
				auto("a", "10.0.1.0/24", "fd00:1::/120"),
				auto("b", "10.0.2.0/24"),
			},
			steps: []step{
				{assign: req("dev/x").pool("a").p(), want: []string{"10.0.1.0 a"}, changed: true},
				{assign: req("dev/y").pool("b").p(), want: []string{"10.0.2.0 b"}, changed: true},
				{pools: []allocator.Pool{
					{Name: "a", AutoAssign: true, Namespaces: []string{"prod"}, Ranges: ranges("10.0.1.0/24", "fd00:1::/120")},
				}},
				{assign: req("dev/x").pool("a").p(), want: []string{"10.0.1.0 a"}},
				{assign: req("dev/y").pool("b").p(), want: []string{"10.0.2.0"}},
				// Optional families cannot come from there: missing.
				{assign: req("dev/x", v4, v6).policy(allocator.PreferDualStack).pool("a").p(), want: []string{"10.0.1.0 a"}, missing: []allocator.Family{v6}},
				{assign: req("dev/x", v4, v6).pool("a").p(), err: allocator.ErrPoolNotAllowed, msg: `pool "a" does not serve namespace "dev"`},
				{assign: req("dev/y", v4, v6).pool("b").p(), err: allocator.ErrNoSuchPool, msg: `"b"`},
				{assign: req("dev/z").pool("a").p(), err: allocator.ErrPoolNotAllowed},
				{assign: req("dev/z").pool("b").ask("10.0.2.9").p(), err: allocator.ErrNoSuchPool},
			},
			holding: []string{"dev/x 10.0.1.0", "dev/y 10.0.2.0"},
			orphans: []string{"dev/y 10.0.2.0"},
		},
		{
			name:  "invalid pools change nothing",
			pools: []allocator.Pool{auto("p", "10.0.0.0/30")},
			steps: []step{
				{pools: []allocator.Pool{auto("q", "10.0.0.0/30"), auto("q", "10.0.1.0/30")}, err: allocator.ErrInvalidPool, msg: `duplicate name "q"`},
				{pools: []allocator.Pool{{Name: "q", Ranges: []allocator.Range{rng("10.0.0.5", "10.0.0.1")}}}, err: allocator.ErrReversed},
				{assign: req("ns/a").p(), want: []string{"10.0.0.0 p"}, changed: true},
			},
			holding: []string{"ns/a 10.0.0.0"},
		},
		{
			name:  "restore",
			pools: []allocator.Pool{auto("p", "10.0.0.0/29", "fd00::/120")},
			steps: []step{
				{restore: &restore{owner: "ns/old", addrs: []string{"10.0.0.1", "fd00::1"}}},
				{restore: &restore{owner: "ns/hand", addrs: []string{"192.168.77.7"}}},
				{restore: &restore{owner: "ns/new", addrs: []string{"10.0.0.1"}}, err: allocator.ErrInUse, msg: "restore ns/new: address 10.0.0.1 is in use by ns/old: the request has no sharing key"},
				{restore: &restore{owner: "ns/s1", addrs: []string{"10.0.0.5"}, key: "k", ports: []string{"80"}}},
				{restore: &restore{owner: "ns/s2", addrs: []string{"::ffff:10.0.0.5"}, key: "k", ports: []string{"443"}}},
				{restore: &restore{owner: "ns/s3", addrs: []string{"10.0.0.5"}, key: "k", ports: []string{"443"}}, err: allocator.ErrInUse, msg: "port 443/TCP collides with ns/s2"},
				{restore: &restore{owner: "ns/s3", addrs: []string{"10.0.0.5"}, key: "j"}, err: allocator.ErrInUse},
				// A failed restore of a known owner leaves it as it was.
				{restore: &restore{owner: "ns/s2", addrs: []string{"10.0.0.1"}}, err: allocator.ErrInUse},
				{restore: &restore{owner: "ns/bad", addrs: []string{"0.0.0.0"}}, err: allocator.ErrInvalidRequest, msg: "unspecified"},
				{restore: &restore{owner: "", addrs: []string{"10.0.0.2"}}, err: allocator.ErrInvalidRequest},
				// Auto assignment skips restored addresses.
				{assign: req("ns/a").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{assign: req("ns/b").p(), want: []string{"10.0.0.2 p"}, changed: true},
				// The restored state is idempotent under Assign.
				{assign: req("ns/old", v4, v6).p(), want: []string{"10.0.0.1 p", "fd00::1 p"}},
				{assign: req("ns/hand").p(), want: []string{"192.168.77.7"}},
				// Restore replaces; an empty one releases.
				{restore: &restore{owner: "ns/b", addrs: []string{"10.0.0.3"}}},
				{restore: &restore{owner: "ns/a"}},
			},
			holding: []string{"ns/b 10.0.0.3", "ns/hand 192.168.77.7", "ns/old 10.0.0.1 fd00::1", "ns/s1 10.0.0.5", "ns/s2 10.0.0.5"},
			orphans: []string{"ns/hand 192.168.77.7"},
		},
		{
			// kube-vip lets a Service ask for several addresses of one
			// family: each is held, none is handed to another owner.
			name:  "several addresses of one family",
			pools: []allocator.Pool{auto("p", "10.0.0.0/29", "fd00::/120")},
			steps: []step{
				{restore: &restore{owner: "ns/multi", addrs: []string{"10.0.0.1", "10.0.0.2", "fd00::1", "10.0.0.1"}}},
				{assign: req("ns/a").p(), want: []string{"10.0.0.0 p"}, changed: true},
				{assign: req("ns/b").p(), want: []string{"10.0.0.3 p"}, changed: true},
				{assign: req("ns/multi", v4, v6).ask("10.0.0.1", "fd00::1", "10.0.0.2").p(), want: []string{"10.0.0.1 p", "10.0.0.2 p", "fd00::1 p"}},
				{assign: req("ns/multi", v4).ask("10.0.0.2", "10.0.0.4").p(), want: []string{"10.0.0.2 p", "10.0.0.4 p"}, changed: true},
				{assign: req("ns/c").p(), want: []string{"10.0.0.1 p"}, changed: true},
				{assign: req("ns/d").ask("10.0.0.4").p(), err: allocator.ErrInUse, msg: "in use by ns/multi"},
				{assign: req("ns/multi", v4).ask("10.0.0.2", "10.0.0.9").p(), err: allocator.ErrNotInPool},
				// Without a request one address per family is kept.
				{assign: req("ns/multi").p(), want: []string{"10.0.0.2 p"}, changed: true},
				{assign: req("ns/d").ask("10.0.0.4").p(), want: []string{"10.0.0.4 p"}, changed: true},
			},
			holding: []string{"ns/a 10.0.0.0", "ns/b 10.0.0.3", "ns/c 10.0.0.1", "ns/d 10.0.0.4", "ns/multi 10.0.0.2"},
		},
		{
			name:  "invalid requests",
			pools: []allocator.Pool{auto("p", "10.0.0.0/29", "fd00::/120")},
			steps: []step{
				{assign: req("").p(), err: allocator.ErrInvalidRequest, msg: "no owner"},
				{assign: req("ns/a").families().p(), err: allocator.ErrInvalidRequest, msg: "no families"},
				{assign: req("ns/a").families("IPv5").p(), err: allocator.ErrInvalidRequest, msg: `unknown family "IPv5"`},
				{assign: req("ns/a").families(v4, v4).policy(allocator.PreferDualStack).p(), err: allocator.ErrInvalidRequest, msg: "family IPv4 twice"},
				{assign: req("ns/a", v4, v6).policy(allocator.SingleStack).p(), err: allocator.ErrInvalidRequest, msg: "SingleStack takes one family, not 2"},
				{assign: req("ns/a", v4).policy(allocator.RequireDualStack).p(), err: allocator.ErrInvalidRequest, msg: "RequireDualStack takes two families"},
				{assign: req("ns/a", v4).policy("Whatever").p(), err: allocator.ErrInvalidRequest, msg: "unknown family policy"},
				{assign: req("ns/a", v4).ask("fd00::1").p(), err: allocator.ErrInvalidRequest, msg: "fd00::1 is IPv6, not one of the families [IPv4]"},
				{assign: req("ns/a", v4).ask("0.0.0.0").p(), err: allocator.ErrInvalidRequest, msg: "unspecified"},
				{assign: req("ns/a", v6).ask("fe80::1%eth0").p(), err: allocator.ErrInvalidRequest, msg: "zones"},
				{assign: req("ns/a", v4).ask("10.0.0.1", "10.0.0.1").p(), want: []string{"10.0.0.1 p"}, changed: true},
			},
			holding: []string{"ns/a 10.0.0.1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := runSteps(t, tc.pools, tc.steps)
			if tc.holding != nil {
				if diff := cmp.Diff(tc.holding, holdings(a)); diff != "" {
					t.Errorf("assignments (-want +got):\n%s", diff)
				}
			}
			var orphans []string
			for _, o := range a.Orphans() {
				orphans = append(orphans, o.Owner+" "+o.Addr.String())
			}
			if diff := cmp.Diff(tc.orphans, orphans); diff != "" {
				t.Errorf("orphans (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewInvalid(t *testing.T) {
	_, err := allocator.New([]allocator.Pool{{Name: ""}})
	if !errors.Is(err, allocator.ErrInvalidPool) {
		t.Errorf("New: %v, want ErrInvalidPool", err)
	}
}

func TestErrorTypes(t *testing.T) {
	a, err := allocator.New([]allocator.Pool{auto("p", "10.0.0.0/32")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Assign(*req("ns/a").p()); err != nil {
		t.Fatal(err)
	}
	_, err = a.Assign(*req("ns/b").ask("10.0.0.0").p())
	var inUse *allocator.InUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("Assign: %v, want *InUseError", err)
	}
	if diff := cmp.Diff(&allocator.InUseError{
		Addr: netip.MustParseAddr("10.0.0.0"), Holders: []string{"ns/a"}, Reason: "the request has no sharing key",
	}, inUse, cmpNetip); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	_, err = a.Assign(*req("ns/b").p())
	var ex *allocator.ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("Assign: %v, want *ExhaustedError", err)
	}
	if diff := cmp.Diff(&allocator.ExhaustedError{Family: v4, Pools: []string{"p"}}, ex); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := a.Holders(netip.MustParseAddr("::ffff:10.0.0.0")); !cmp.Equal(got, []string{"ns/a"}) {
		t.Errorf("Holders = %v", got)
	}
}

func TestLookup(t *testing.T) {
	a, err := allocator.New([]allocator.Pool{auto("p", "10.0.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Lookup("ns/a"); ok {
		t.Error("Lookup of an unknown owner: ok")
	}
	if _, err := a.Assign(*req("ns/a").share("k", "443/tcp", "80", "80/TCP", "53/udp").p()); err != nil {
		t.Fatal(err)
	}
	got, ok := a.Lookup("ns/a")
	want := allocator.Assignment{
		Owner: "ns/a", Namespace: "ns", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.0")}, SharingKey: "k",
		Ports: []allocator.Port{{Port: 80, Protocol: "TCP"}, {Port: 443, Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}},
	}
	if diff := cmp.Diff(want, got, cmpNetip); !ok || diff != "" {
		t.Errorf("Lookup (-want +got):\n%s", diff)
	}
	a.Release("ns/a")
	if _, ok := a.Lookup("ns/a"); ok {
		t.Error("Lookup after Release: ok")
	}
	if got := a.Holders(netip.MustParseAddr("10.0.0.0")); got != nil {
		t.Errorf("Holders after Release = %v", got)
	}
}

func TestStats(t *testing.T) {
	a, err := allocator.New([]allocator.Pool{
		auto("small", "10.0.0.0/30", "fd00::/126"),
		{Name: "big", AutoAssign: true, Priority: 1, Ranges: ranges("10.1.0.0/16", "fd01::/64")},
		{Name: "avoid", AvoidBuggyIPs: true, Ranges: ranges("10.2.0.0/24")},
		{Name: "over", AvoidBuggyIPs: true, Ranges: ranges("10.0.0.0/24")}, // overlaps small
		{Name: "huge", Ranges: ranges("fd02::/63")},
		{Name: "empty"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := a.Assign(*req(fmt.Sprintf("ns/%d", i), v4, v6).p()); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.Restore("ns/by-hand", []netip.Addr{netip.MustParseAddr("10.2.0.0"), netip.MustParseAddr("fd02::5")}, "", nil))
	if _, err := a.Assign(*req("ns/avoid").pool("avoid").p()); err != nil {
		t.Fatal(err)
	}
	want := map[string]allocator.PoolStats{
		"small": {IPv4: allocator.Counts{Total: 4, Used: 4, Free: 0}, IPv6: allocator.Counts{Total: 4, Used: 4, Free: 0}},
		"big": {
			IPv4: allocator.Counts{Total: 65536, Used: 1, Free: 65535},
			IPv6: allocator.Counts{Total: math.MaxUint64, Used: 1, Free: math.MaxUint64}, // 2^64-1 is exact
		},
		// 10.2.0.0 is held but was never the pool's to hand out.
		"avoid": {IPv4: allocator.Counts{Total: 254, Used: 2, Free: 253}},
		// small's 10.0.0.0-3 are held; .0 is not the pool's to hand out.
		"over":  {IPv4: allocator.Counts{Total: 254, Used: 4, Free: 251}},
		"huge":  {IPv6: allocator.Counts{Total: math.MaxUint64, Used: 1, Free: math.MaxUint64}},
		"empty": {},
	}
	if diff := cmp.Diff(want, a.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

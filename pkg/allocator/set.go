package allocator

import (
	"slices"
	"sort"
)

// runSet is a set of addresses of one family, kept as sorted, disjoint,
// maximal runs of consecutive addresses (two runs never touch). Its cost
// depends on the number of runs, never on the size of the address space.
type runSet struct {
	runs []run
}

type run struct{ lo, hi u128 }

// find returns the index of the last run with lo <= u, or -1.
func (s *runSet) find(u u128) int {
	return sort.Search(len(s.runs), func(i int) bool { return u.less(s.runs[i].lo) }) - 1
}

func (s *runSet) contains(u u128) bool {
	i := s.find(u)
	return i >= 0 && !s.runs[i].hi.less(u)
}

// add adds u, which must not be in the set.
func (s *runSet) add(u u128) {
	i := s.find(u)
	left := i >= 0 && s.runs[i].hi.cmp(u.prev()) == 0 && !u.isZero()
	n, ok := u.next()
	right := ok && i+1 < len(s.runs) && s.runs[i+1].lo == n
	switch {
	case left && right:
		s.runs[i].hi = s.runs[i+1].hi
		s.runs = slices.Delete(s.runs, i+1, i+2)
	case left:
		s.runs[i].hi = u
	case right:
		s.runs[i+1].lo = u
	default:
		s.runs = slices.Insert(s.runs, i+1, run{u, u})
	}
}

// remove removes u, which must be in the set.
func (s *runSet) remove(u u128) {
	i := s.find(u)
	r := s.runs[i]
	switch {
	case r.lo == r.hi:
		s.runs = slices.Delete(s.runs, i, i+1)
	case r.lo == u:
		s.runs[i].lo, _ = u.next()
	case r.hi == u:
		s.runs[i].hi = u.prev()
	default:
		n, _ := u.next()
		s.runs[i].hi = u.prev()
		s.runs = slices.Insert(s.runs, i+1, run{n, r.hi})
	}
}

// firstFree returns the lowest address in [lo, hi] that is not in the set
// (and, with avoid, does not end in .0 or .255; avoid is for IPv4 only).
// It walks only the runs it meets.
func (s *runSet) firstFree(lo, hi u128, avoid bool) (u128, bool) {
	c := lo
	if avoid {
		c = skipBuggy(c)
	}
	i := max(s.find(c), 0)
	for {
		if hi.less(c) {
			return u128{}, false
		}
		for i < len(s.runs) && s.runs[i].hi.less(c) {
			i++
		}
		if i == len(s.runs) || c.less(s.runs[i].lo) {
			return c, true
		}
		// c is in runs[i]: the address after it is free (runs never
		// touch) unless skipping .0/.255 lands in the next run.
		var ok bool
		if c, ok = s.runs[i].hi.next(); !ok {
			return u128{}, false
		}
		if avoid {
			c = skipBuggy(c)
		}
		i++
	}
}

// count returns how many addresses of [lo, hi] are in the set and, for
// IPv4, how many of those end in .0 or .255.
func (s *runSet) count(lo, hi u128, v4 bool) (n, buggy uint64) {
	i := s.find(lo)
	if i < 0 {
		i = 0
	}
	for ; i < len(s.runs) && !hi.less(s.runs[i].lo); i++ {
		a, b := s.runs[i].lo, s.runs[i].hi
		if a.less(lo) {
			a = lo
		}
		if hi.less(b) {
			b = hi
		}
		if b.less(a) {
			continue
		}
		n += width(a, b).sat64()
		if v4 {
			buggy += countBuggy(a.lo, b.lo)
		}
	}
	return n, buggy
}

// size returns the number of addresses in the set.
func (s *runSet) size() uint64 {
	var n uint64
	for _, r := range s.runs {
		n += width(r.lo, r.hi).sat64()
	}
	return n
}

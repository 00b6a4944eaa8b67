package allocator

import (
	"math"
	"testing"
)

func TestRunSet(t *testing.T) {
	var s runSet
	u := func(n uint64) u128 { return u128{0, n} }
	for _, n := range []uint64{5, 7, 6, 1, 2, 3, 10} {
		s.add(u(n))
	}
	want := []run{{u(1), u(3)}, {u(5), u(7)}, {u(10), u(10)}}
	if !equalRuns(s.runs, want) {
		t.Fatalf("runs = %v, want %v", s.runs, want)
	}
	for _, tc := range []struct {
		lo, hi uint64
		want   uint64
		ok     bool
	}{
		{0, 100, 0, true}, {1, 100, 4, true}, {5, 100, 8, true}, {5, 7, 0, false}, {10, 10, 0, false}, {10, 11, 11, true},
	} {
		got, ok := s.firstFree(u(tc.lo), u(tc.hi), false)
		if ok != tc.ok || ok && got != u(tc.want) {
			t.Errorf("firstFree(%d, %d) = %v, %v; want %d, %v", tc.lo, tc.hi, got, ok, tc.want, tc.ok)
		}
	}
	s.remove(u(6))
	s.remove(u(1))
	s.remove(u(10))
	want = []run{{u(2), u(3)}, {u(5), u(5)}, {u(7), u(7)}}
	if !equalRuns(s.runs, want) {
		t.Fatalf("runs = %v, want %v", s.runs, want)
	}
	if n, _ := s.count(u(3), u(7), true); n != 3 {
		t.Errorf("count(3, 7) = %d, want 3", n)
	}
	// The top of the IPv6 space does not overflow.
	var top runSet
	maxU := maxU128()
	top.add(maxU)
	top.add(maxU.prev())
	if _, ok := top.firstFree(maxU.prev(), maxU, false); ok {
		t.Error("firstFree at the top of the space: found one")
	}
	if got, ok := top.firstFree(maxU.prev().prev(), maxU, false); !ok || got != maxU.prev().prev() {
		t.Errorf("firstFree below the top = %v, %v", got, ok)
	}
	if n, _ := top.count(u128{}, maxU, false); n != 2 {
		t.Errorf("count = %d, want 2", n)
	}
	top.remove(maxU)
	top.remove(maxU.prev())
	if len(top.runs) != 0 {
		t.Errorf("runs = %v", top.runs)
	}
	if got := (u128{math.MaxUint64, 0}).prev(); got != (u128{math.MaxUint64 - 1, math.MaxUint64}) {
		t.Errorf("prev = %v", got)
	}
}

func equalRuns(a, b []run) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzRunSet checks runSet against a plain set on a small window of the
// address space: near a /24 boundary of IPv4 (for .0/.255 skipping), or at
// the top of the IPv6 space (for overflow).
func FuzzRunSet(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte{1, 0x11, 0x22, 0x33, 0x44, 0xff, 0xfe, 0x80, 0x81})
	f.Add([]byte{0, 0x25, 0x29, 0x2d, 0x31, 0x35, 0x39, 0x3d, 0x41, 0x03, 0x13, 0x23})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		const window = 32
		v6 := data[0]&1 == 1
		base := u128{0, 0x0a0000f0} // 10.0.0.240: the window crosses 10.0.1.0
		if v6 {
			base = maxU128().sub(u128{0, window - 1})
		}
		at := func(i uint64) u128 { s, _ := base.add(u128{0, i}); return s }
		var s runSet
		var model [window]bool
		for _, b := range data[1:] {
			i := uint64(b>>3) % window
			switch b & 7 {
			case 0, 1, 2:
				if !model[i] {
					s.add(at(i))
					model[i] = true
				}
			case 3, 4:
				if model[i] {
					s.remove(at(i))
					model[i] = false
				}
			default:
				j := uint64(b) % window
				lo, hi := min(i, j), max(i, j)
				avoid := !v6 && b&4 != 0
				got, ok := s.firstFree(at(lo), at(hi), avoid)
				want, wantOK := uint64(0), false
				for k := lo; k <= hi; k++ {
					if !model[k] && !(avoid && buggy(at(k))) {
						want, wantOK = k, true
						break
					}
				}
				if ok != wantOK || ok && got != at(want) {
					t.Fatalf("firstFree(%d, %d, %v) = %v, %v; want %v, %v (model %v)", lo, hi, avoid, got, ok, at(want), wantOK, model)
				}
				var n, nb uint64
				for k := lo; k <= hi; k++ {
					if model[k] {
						n++
						if buggy(at(k)) {
							nb++
						}
					}
				}
				gn, gb := s.count(at(lo), at(hi), !v6)
				if gn != n || !v6 && gb != nb {
					t.Fatalf("count(%d, %d) = %d, %d; want %d, %d", lo, hi, gn, gb, n, nb)
				}
			}
			if err := s.valid(); err != nil {
				t.Fatal(err)
			}
			for k := range uint64(window) {
				if s.contains(at(k)) != model[k] {
					t.Fatalf("contains(%d) = %v, want %v", k, !model[k], model[k])
				}
			}
		}
	})
}

package eval

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// subsets are M random drops over `units` training units (token occurrences, or corpus
// offsets), each unit dropped independently with probability f.
type subsets struct {
	M     int
	drops [][]int32 // per subset, its dropped units in increasing order
	start []int32   // CSR over units: the subsets dropping unit u are of[start[u]:start[u+1]]
	of    []int32
	steps []int // per subset, the first step it touches (set by the caller's mapping; 0 = unknown)
}

// drawSubsets draws the drops with geometric skips (one draw per dropped unit).
func drawSubsets(units, M int, f float64, seed uint64) *subsets {
	s := &subsets{M: M, drops: make([][]int32, M), start: make([]int32, units+1)}
	logq := math.Log1p(-f)
	for m := range M {
		rng := rand.New(rand.NewPCG(seed, 0x1d5+uint64(m)))
		for u := -1; ; {
			u += 1 + int(math.Floor(math.Log(1-rng.Float64())/logq))
			if u >= units || u < 0 {
				break
			}
			s.drops[m] = append(s.drops[m], int32(u))
			s.start[u+1]++
		}
	}
	for u := range units {
		s.start[u+1] += s.start[u]
	}
	s.of = make([]int32, s.start[units])
	fill := slices.Clone(s.start[:units])
	for m, d := range s.drops {
		for _, u := range d {
			s.of[fill[u]] = int32(m)
			fill[u]++
		}
	}
	return s
}

// subsetsOf lists the subsets that drop unit u.
func (s *subsets) subsetsOf(u int) []int32 {
	if u < 0 || u+1 >= len(s.start) {
		return nil
	}
	return s.of[s.start[u]:s.start[u+1]]
}

// has reports whether subset m drops unit u.
func (s *subsets) has(m, u int) bool {
	d := s.drops[m]
	i := sort.Search(len(d), func(i int) bool { return d[i] >= int32(u) })
	return i < len(d) && d[i] == int32(u)
}

// first is the earliest step subset m can touch; retrains start from the snapshot before it.
// Offsets can be trained at any step, so only token units narrow it.
func (s *subsets) first(m int) int {
	if s.steps == nil {
		return 1
	}
	return s.steps[m]
}

// singleSubsets are k retrains that each drop one random unit (token units record their step).
func singleSubsets(units, k int, seed uint64, perStep int, offsets bool) *subsets {
	rng := rand.New(rand.NewPCG(seed, 0x51e))
	s := &subsets{M: k, drops: make([][]int32, k)}
	if !offsets {
		s.steps = make([]int, k)
	}
	for m := range k {
		u := rng.IntN(units)
		s.drops[m] = []int32{int32(u)}
		if !offsets {
			s.steps[m] = u/perStep + 1
		}
	}
	return s
}

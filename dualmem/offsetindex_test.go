package dualmem

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// The offset index lists every offset's tokens in memory order, as a sort by (offset,
// index) would (the tokens without one first), and nothing for an offset no token has.
func TestOffsetIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]int64, 5000)
	for j := range random {
		random[j] = int64(rng.IntN(700)) - 3 // a few without an offset
	}
	ordered := slices.Clone(random)
	slices.Sort(ordered)
	for name, offsets := range map[string][]int64{"random": random, "ordered": ordered, "none": nil, "all negative": {-1, -1}} {
		x := newOffsetIndex(offsets, nil)
		order := make([]int32, len(offsets))
		for j := range order {
			order[j] = int32(j)
		}
		key := func(j int32) int64 { return max(offsets[j], -1) } // no offset: first, in memory order
		slices.SortFunc(order, func(a, b int32) int { return cmp.Or(cmp.Compare(key(a), key(b)), cmp.Compare(a, b)) })
		if !slices.Equal(x.sorted, order) {
			t.Errorf("%s: tokens not sorted by offset, then index", name)
		}
		for off := int64(-2); off < 710; off++ {
			var want []int32
			for j, o := range offsets {
				if o == off && off >= 0 {
					want = append(want, int32(j))
				}
			}
			if got := x.of(off); !slices.Equal(got, want) {
				t.Fatalf("%s: offset %d: tokens %v, want %v", name, off, got, want)
			}
		}
	}
}

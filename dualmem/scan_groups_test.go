package dualmem

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// TestScanRangeAndGroups checks a range-limited scan and the per-group sums against the
// per-token scores, for both kinds of projection and every kernel.
func TestScanRangeAndGroups(t *testing.T) {
	mem, meta := randomMemory(9000, 16, 5, 3)
	s := NewScanner(mem, meta)
	rng := rand.New(rand.NewPCG(4, 4))
	x, u := randF32(rng, 16, 1), randF32(rng, 5, 1)
	qs := []Query{{X: x, Token: 2}, {X: x, U: u, Token: -1}}
	const G = 7
	groups := make([]int32, s.N)
	for j := range groups {
		groups[j] = int32(j%(G+1)) - 1 // −1 is "no group"
	}
	tests := []struct {
		name     string
		from, to int
	}{
		{"all", 0, 0},
		{"range inside a step", 100, 1500},
		{"range across steps", 1000, 7777},
		{"empty", 4096, 4096},
	}
	for _, tt := range tests {
		for _, kern := range []Kernel{KernelGo, KernelSIMD} {
			res, err := s.Scan(context.Background(), qs, ScanOptions{TopK: 5, Kernel: kern, Block: 256, Workers: 3,
				From: tt.from, To: tt.to, Groups: groups, NGroups: G})
			if err != nil {
				t.Fatal(err)
			}
			to := tt.to
			if to == 0 {
				to = s.N
			}
			for qi, q := range qs {
				var pos, neg float64
				ga, gc, gabs := make([]float64, G), make([]float64, G), make([]float64, G)
				best := math.Inf(-1)
				for j := tt.from; j < to; j++ {
					a, c := s.Score(q, j)
					if c > 0 {
						pos += c
					} else {
						neg += c
					}
					if g := groups[j]; g >= 0 {
						ga[g] += a
						gc[g] += c
						gabs[g] += math.Abs(a)
					}
					best = math.Max(best, c)
				}
				r := res[qi]
				// α is float32 in the scan: compare sums within float32 rounding of their terms.
				near := func(what string, got, want, scale float64) {
					t.Helper()
					if math.Abs(got-want) > 1e-6*(1+scale) {
						t.Errorf("%s kernel %d query %d %s: got %g, want %g", tt.name, kern, qi, what, got, want)
					}
				}
				near("positive", r.Positive, pos, pos)
				near("negative", r.Negative, neg, -neg)
				for g := range G {
					near("group alpha", r.GroupAlpha[g], ga[g], gabs[g])
					near("group contribution", r.GroupContribution[g], gc[g], pos-neg)
				}
				if to > tt.from {
					near("top contribution", r.TopContribution[0].Contribution, best, math.Abs(best))
				} else if len(r.TopContribution) != 0 {
					t.Errorf("%s: empty range found %d hits", tt.name, len(r.TopContribution))
				}
				for _, h := range r.TopContribution {
					if h.Index < tt.from || h.Index >= to {
						t.Errorf("%s: hit %d outside [%d, %d)", tt.name, h.Index, tt.from, to)
					}
				}
			}
		}
	}
}

func TestScanRangeAndGroupsBadInput(t *testing.T) {
	mem, meta := randomMemory(3000, 8, 3, 5)
	s := NewScanner(mem, meta)
	q := []Query{{X: make([]float32, 8), Token: 0}}
	for _, opt := range []ScanOptions{
		{From: -1},
		{From: 10, To: 5},
		{To: 3001},
		{Groups: make([]int32, 10), NGroups: 1},
	} {
		if _, err := s.Scan(context.Background(), q, opt); err == nil {
			t.Errorf("%+v: no error", opt)
		}
	}
}

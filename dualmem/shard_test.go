package dualmem

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func shardQueries(n, din, dout int, seed uint64) []Query {
	rng := rand.New(rand.NewPCG(seed, 9))
	qs := make([]Query, n)
	for i := range qs {
		x, u := make([]float32, din), make([]float32, dout)
		for k := range x {
			x[k] = float32(rng.NormFloat64())
		}
		for k := range u {
			u[k] = float32(rng.NormFloat64())
		}
		qs[i] = Query{X: x, Token: i % dout}
		if i%2 == 1 {
			qs[i] = Query{X: x, U: u, Token: -1}
		}
	}
	return qs
}

// Scans of disjoint ranges merge into the scan of their union: the same top lists, the same
// sums up to the float32 rounding of each α (a range's edges change which kernel path, SIMD or
// scalar tail, computes a token's α).
func TestMergeEqualsWholeScan(t *testing.T) {
	mem, meta := randomMemory(9000, 16, 5, 4)
	s := NewScanner(mem, meta)
	qs := shardQueries(6, 16, 5, 1)
	groups := make([]int32, s.N)
	for j := range groups {
		groups[j] = int32(j%7) - 1
	}
	ctx := context.Background()
	for _, cuts := range [][]int{{0, 9000}, {0, 2048, 9000}, {0, 1, 3001, 4096, 8999, 9000}, {0, 4500, 4500, 9000}} {
		const k = 7
		opt := ScanOptions{TopK: k, Groups: groups, NGroups: 6}
		whole, err := s.Scan(ctx, qs, opt)
		if err != nil {
			t.Fatal(err)
		}
		var parts [][]Result
		for i := 0; i+1 < len(cuts); i++ {
			o := opt
			o.From, o.To = cuts[i], cuts[i+1]
			if o.To == 0 {
				continue // To 0 means N: an empty range at 0 has no spelling
			}
			r, err := s.Scan(ctx, qs, o)
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, r)
		}
		merged, err := Merge(k, parts...)
		if err != nil {
			t.Fatal(err)
		}
		for qi := range qs {
			w, m := whole[qi], merged[qi]
			for name, lists := range map[string][2][]Hit{"attention": {w.TopAttention, m.TopAttention}, "contribution": {w.TopContribution, m.TopContribution}} {
				if len(lists[0]) != len(lists[1]) {
					t.Fatalf("cuts %v query %d %s: %d hits, want %d", cuts, qi, name, len(lists[1]), len(lists[0]))
				}
				for i := range lists[0] {
					if lists[0][i].Index != lists[1][i].Index {
						t.Fatalf("cuts %v query %d %s rank %d: %d, want %d", cuts, qi, name, i, lists[1][i].Index, lists[0][i].Index)
					}
				}
			}
			near := func(what string, a, b float64) {
				if math.Abs(a-b) > 1e-6*math.Max(1, math.Abs(a)) {
					t.Fatalf("cuts %v query %d %s: merged %g, whole %g", cuts, qi, what, b, a)
				}
			}
			near("total", w.Total(), m.Total())
			near("positive", w.Positive, m.Positive)
			near("abs total", w.AbsTotal, m.AbsTotal)
			for st := range w.StepAlpha {
				near("step alpha", w.StepAlpha[st], m.StepAlpha[st])
				near("step |alpha|", w.StepAbsAlpha[st], m.StepAbsAlpha[st])
				near("step contribution", w.StepContribution[st], m.StepContribution[st])
			}
			for g := range w.GroupAlpha {
				near("group alpha", w.GroupAlpha[g], m.GroupAlpha[g])
				near("group contribution", w.GroupContribution[g], m.GroupContribution[g])
			}
		}
	}
}

func TestMergeRejectsMismatchedParts(t *testing.T) {
	mem, meta := randomMemory(3000, 8, 3, 5)
	s := NewScanner(mem, meta)
	ctx := context.Background()
	a, _ := s.Scan(ctx, shardQueries(2, 8, 3, 1), ScanOptions{TopK: 3, To: 1000})
	b, _ := s.Scan(ctx, shardQueries(2, 8, 3, 2), ScanOptions{TopK: 3, From: 1000})
	c, _ := s.Scan(ctx, shardQueries(3, 8, 3, 1), ScanOptions{TopK: 3, From: 1000})
	for _, tc := range []struct {
		name  string
		k     int
		parts [][]Result
		want  string
	}{
		{"other queries", 3, [][]Result{a, b}, "not the same query"},
		{"other batch size", 3, [][]Result{a, c}, "answers 3 queries"},
		{"no k", 0, [][]Result{a}, "top-k 0"},
	} {
		if _, err := Merge(tc.k, tc.parts...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// BenchmarkMerge is the cost of merging per-shard answers of a 32-token request (top-10,
// every per-step sum) for a 1M-token memory of 500 steps split into 4 and 16 shards.
func BenchmarkMerge(b *testing.B) {
	for _, shards := range []int{4, 16} {
		b.Run(itoa(shards)+"-shards", func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, uint64(shards)))
			parts := make([][]Result, shards)
			for p := range parts {
				parts[p] = make([]Result, 32)
				for qi := range parts[p] {
					r := &parts[p][qi]
					r.StepAlpha, r.StepAbsAlpha, r.StepContribution = make([]float64, 500), make([]float64, 500), make([]float64, 500)
					for i := range 10 {
						r.TopAttention = append(r.TopAttention, Hit{Index: rng.IntN(1 << 20), Alpha: rng.NormFloat64()})
						r.TopContribution = append(r.TopContribution, Hit{Index: rng.IntN(1 << 20), Contribution: float64(10 - i)})
					}
				}
			}
			for b.Loop() {
				if _, err := Merge(10, parts...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

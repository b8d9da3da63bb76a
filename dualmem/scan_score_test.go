package dualmem

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// randomMembers lists about one token in every few of [from, to), each in one of n classes
// (mostly class 0, as for the members of a context).
func randomMembers(rng *rand.Rand, from, to, every, n int) Members {
	m := Members{N: n}
	for j := from; j < to; j++ {
		if rng.IntN(every) != 0 {
			continue
		}
		m.Tokens = append(m.Tokens, int32(j))
		if c := rng.IntN(2 * n); c < n && c > 0 {
			m.Classes = append(m.Classes, ClassOf{Token: int32(j), Class: int32(c)})
		}
	}
	return m
}

// bruteClasses is what a scan must find for m: every member scored on its own by Scores,
// summed in memory order, and each class's best k by a full sort.
func bruteClasses(s *Scanner, q Query, m Members, k int) []Class {
	out := make([]Class, m.N)
	cls := map[int32]int32{}
	for _, c := range m.Classes {
		cls[c.Token] = c.Class
	}
	hits := make([][]Hit, m.N)
	for _, j := range m.Tokens {
		a, c := make([]float64, 1), make([]float64, 1)
		s.Scores(q, []int32{j}, a, c)
		cl := cls[j]
		out[cl].Count++
		out[cl].Alpha += a[0]
		out[cl].Contribution += c[0]
		hits[cl] = append(hits[cl], Hit{Index: int(j), Alpha: a[0], Contribution: c[0]})
	}
	for cl, h := range hits {
		out[cl].TopAttention, out[cl].TopContribution = sortedHead(h, k, true), sortedHead(h, k, false)
	}
	return out
}

// sortedHead is the best k of hits by |α| (abs) or contribution, by a full sort, ties by
// index.
func sortedHead(hits []Hit, k int, abs bool) []Hit {
	h := &hitHeap{abs: abs}
	out := slices.Clone(hits)
	slices.SortFunc(out, func(x, y Hit) int {
		if h.better(x, y) {
			return -1
		}
		return 1
	})
	return out[:min(k, len(out))]
}

// sameClasses reports whether got and want hold the same counts, sums and top lists, bit
// for bit.
func sameClasses(got, want []Class) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Count != w.Count || g.Alpha != w.Alpha || g.Contribution != w.Contribution ||
			!slices.Equal(g.TopAttention, w.TopAttention) || !slices.Equal(g.TopContribution, w.TopContribution) {
			return false
		}
	}
	return true
}

// TestScanMembers checks a scan's member classes against every member scored by Scores on
// its own, for both kinds of projection, every kernel and token ranges that cut blocks and
// steps; with 8 outputs the SIMD scan reads the scores from its block, with 5 the
// projections are not SIMD and Scores scores them. The sums are in memory order, bit for
// bit, with one worker or three.
func TestScanMembers(t *testing.T) {
	for _, dout := range []int{5, 8} {
		scanMembers(t, dout)
	}
}

func scanMembers(t *testing.T, dout int) {
	mem, meta := randomMemory(9000, 16, dout, 6)
	s := NewScanner(mem, meta)
	rng := rand.New(rand.NewPCG(5, 5))
	x, u := randF32(rng, 16, 1), randF32(rng, dout, 1)
	qs := []Query{{X: x, Token: 2}, {X: x, U: u, Token: -1}, {X: randF32(rng, 16, 1), Token: 4}}
	tests := []struct {
		name     string
		from, to int
	}{
		{"all", 0, 9000},
		{"range across steps", 1000, 7777},
		{"empty range", 4096, 4096},
		{"blocks not a multiple of 4", 3, 8998},
	}
	const k = 4
	for _, tt := range tests {
		lists := make([]Members, len(qs))
		for qi := range qs {
			lists[qi] = randomMembers(rng, tt.from, tt.to, 3+qi, 1+2*qi)
		}
		for _, kern := range []Kernel{KernelGo, KernelSIMD} {
			for _, workers := range []int{1, 3} {
				res, err := s.Scan(context.Background(), qs, ScanOptions{TopK: k, Kernel: kern, Block: 256, Workers: workers,
					From: tt.from, To: tt.to, Members: lists})
				if err != nil {
					t.Fatal(err)
				}
				for qi, q := range qs {
					want := bruteClasses(s, q, lists[qi], k)
					if !sameClasses(res[qi].Classes, want) {
						t.Errorf("%d outputs, %s, kernel %d, %d workers, query %d: classes differ from Scores'", dout, tt.name, kern, workers, qi)
					}
					if kern == KernelSIMD && workers == 1 {
						got, err := s.ScoreMembers(context.Background(), q, lists[qi], k)
						if err != nil {
							t.Fatal(err)
						}
						if !sameClasses(got, want) {
							t.Errorf("%d outputs, %s, query %d: ScoreMembers differs from Scores", dout, tt.name, qi)
						}
					}
				}
			}
		}
	}
}

func TestScanMembersBadInput(t *testing.T) {
	mem, meta := randomMemory(3000, 8, 3, 5)
	s := NewScanner(mem, meta)
	q := []Query{{X: make([]float32, 8), Token: 0}}
	one := func(toks ...int32) Members { return Members{Tokens: toks, N: 1} }
	for name, opt := range map[string]ScanOptions{
		"two lists":           {Members: []Members{one(1), one(2)}},
		"not ascending":       {Members: []Members{one(5, 5)}},
		"before From":         {From: 10, Members: []Members{one(9)}},
		"past To":             {To: 100, Members: []Members{one(100)}},
		"no classes":          {Members: []Members{{Tokens: []int32{1}}}},
		"class out of range":  {Members: []Members{{Tokens: []int32{1}, Classes: []ClassOf{{1, 2}}, N: 2}}},
		"class of a stranger": {Members: []Members{{Tokens: []int32{1, 3}, Classes: []ClassOf{{2, 1}}, N: 2}}},
		"classes unsorted":    {Members: []Members{{Tokens: []int32{1, 3}, Classes: []ClassOf{{3, 1}, {1, 1}}, N: 2}}},
	} {
		opt.TopK = 1
		if _, err := s.Scan(context.Background(), q, opt); err == nil {
			t.Errorf("%s: no error", name)
		}
		if m := opt.Members[0]; name != "two lists" && opt.From == 0 && opt.To == 0 {
			if _, err := s.ScoreMembers(context.Background(), q[0], m, 1); err == nil {
				t.Errorf("%s: ScoreMembers gave no error", name)
			}
		}
	}
}

// The classes' best lists are the heads of full sorts, ties broken by memory order, when
// many members score the same, and their sums are in memory order: scored in runs by two
// workers, handed in out of order and merged.
func TestMemberSumsTies(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	const n = 5000
	m := Members{N: 2}
	alpha, contribution := make([]float64, n), make([]float64, n)
	for i, j := range rng.Perm(100000)[:n] {
		m.Tokens = append(m.Tokens, int32(j))
		alpha[i], contribution[i] = float64(rng.IntN(50)-25), float64(rng.IntN(40)-20)
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return int(m.Tokens[a] - m.Tokens[b]) })
	toks, a, c := make([]int32, n), make([]float64, n), make([]float64, n)
	for k, i := range order {
		toks[k], a[k], c[k] = m.Tokens[i], alpha[i], contribution[i]
		if k%3 == 0 {
			m.Classes = append(m.Classes, ClassOf{Token: toks[k], Class: 1})
		}
	}
	m.Tokens = toks
	for _, k := range []int{1, 3, 10, 2000, 6000} {
		// Worker 0 takes the first and third parts, worker 1 the second: each in ascending
		// order; the second is handed in first.
		heaps := []classHeaps{newClassHeaps(2, k), newClassHeaps(2, k)}
		totals := newMemberTotals([]Members{m})
		for _, p := range []int{1, 0, 2} {
			cut := [][2]int{{0, 1700}, {1700, 3100}, {3100, n}}[p]
			b := totals.block(1)
			tk := toks[cut[0]:cut[1]]
			cl, ba, bc := b.grow(0, len(tk))
			copy(ba, a[cut[0]:cut[1]])
			copy(bc, c[cut[0]:cut[1]])
			m.classify(tk, cl)
			heaps[p%2].offer(tk, cl, ba, bc)
			totals.done(p, b)
		}
		got := totals.classes(0, heaps, k)
		for cl := range 2 {
			var all []Hit
			for i, j := range toks {
				if (i%3 == 0) == (cl == 1) {
					all = append(all, Hit{Index: int(j), Alpha: a[i], Contribution: c[i]})
				}
			}
			for _, abs := range []bool{true, false} {
				want := sortedHead(all, k, abs)
				gotTop := got[cl].TopContribution
				if abs {
					gotTop = got[cl].TopAttention
				}
				if !slices.Equal(gotTop, want) {
					t.Fatalf("k=%d class %d attention=%v: best list differs from the sorted head", k, cl, abs)
				}
			}
			var sa, sc float64
			for _, h := range all {
				sa += h.Alpha
				sc += h.Contribution
			}
			if got[cl].Count != len(all) || got[cl].Alpha != sa || got[cl].Contribution != sc {
				t.Errorf("class %d: count %d, sums %g %g, want %d, %g %g in memory order", cl, got[cl].Count,
					got[cl].Alpha, got[cl].Contribution, len(all), sa, sc)
			}
		}
	}
}

// A cancelled request stops scoring members and says why.
func TestScoreMembersCancelled(t *testing.T) {
	mem, meta := randomMemory(3000, 8, 3, 5)
	s := NewScanner(mem, meta)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := randomMembers(rand.New(rand.NewPCG(1, 1)), 0, 3000, 2, 2)
	if _, err := s.ScoreMembers(ctx, Query{X: make([]float32, 8), Token: 0}, m, 3); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

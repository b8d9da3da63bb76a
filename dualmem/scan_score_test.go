package dualmem

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestScanScoreLists checks that the scores a scan returns for listed tokens are Scores'
// own, bit for bit, for both kinds of projection, every kernel and token ranges that cut
// blocks and steps; with 8 outputs the SIMD scan reads them from its block, with 5 the
// projections are not SIMD and Scores scores them.
func TestScanScoreLists(t *testing.T) {
	for _, dout := range []int{5, 8} {
		scanScoreLists(t, dout)
	}
}

func scanScoreLists(t *testing.T, dout int) {
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
	for _, tt := range tests {
		lists := make([][]int32, len(qs))
		for qi := range qs {
			for j := tt.from; j < tt.to; j++ {
				if rng.IntN(3+qi) == 0 {
					lists[qi] = append(lists[qi], int32(j))
				}
			}
		}
		for _, kern := range []Kernel{KernelGo, KernelSIMD} {
			res, err := s.Scan(context.Background(), qs, ScanOptions{TopK: 3, Kernel: kern, Block: 256, Workers: 3,
				From: tt.from, To: tt.to, Score: lists})
			if err != nil {
				t.Fatal(err)
			}
			for qi, q := range qs {
				a, c := make([]float64, len(lists[qi])), make([]float64, len(lists[qi]))
				s.Scores(q, lists[qi], a, c)
				if !slices.Equal(res[qi].ScoreAlpha, a) || !slices.Equal(res[qi].ScoreContribution, c) {
					t.Errorf("%d outputs, %s, kernel %d query %d: listed scores differ from Scores", dout, tt.name, kern, qi)
				}
			}
		}
	}
}

func TestScanScoreListsBadInput(t *testing.T) {
	mem, meta := randomMemory(3000, 8, 3, 5)
	s := NewScanner(mem, meta)
	q := []Query{{X: make([]float32, 8), Token: 0}}
	for name, opt := range map[string]ScanOptions{
		"two lists":     {Score: [][]int32{{1}, {2}}},
		"not ascending": {Score: [][]int32{{5, 5}}},
		"before From":   {From: 10, Score: [][]int32{{9}}},
		"past To":       {To: 100, Score: [][]int32{{100}}},
	} {
		opt.TopK = 1
		if _, err := s.Scan(context.Background(), q, opt); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

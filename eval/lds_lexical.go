package eval

import (
	"math"

	"github.com/spotlight-lm/spotlight/lm"
)

// lexical holds the text-only baselines: a training token counts for a query only when it
// was trained on the query's target, and then by how alike the two contexts read.
type lexical struct {
	Q, ctx   int
	contexts [][]int32
	byTarget map[int32][]int // queries by target token
	grams    map[uint64][]gramHit
	run      []float64 // per query, the BM25 sum over the current row's prefix
}

type gramHit struct {
	q   int
	idf float64
}

// gramN is the n of the BM25 baseline's character n-grams.
const gramN = 4

func gramAt(t []int32, end int) uint64 {
	var g uint64
	for _, c := range t[end-gramN+1 : end+1] {
		g = g<<16 | uint64(uint16(c))
	}
	return g
}

// newLexical indexes the queries' context n-grams with their idf over the training corpus.
func newLexical(corpus []int32, trainLen, ctx int, contexts [][]int32, targets []int32) *lexical {
	lx := &lexical{Q: len(contexts), ctx: ctx, contexts: contexts, byTarget: map[int32][]int{},
		grams: map[uint64][]gramHit{}, run: make([]float64, len(contexts))}
	count := map[uint64]float64{}
	for q, c := range contexts {
		lx.byTarget[targets[q]] = append(lx.byTarget[targets[q]], q)
		for e := gramN - 1; e < len(c); e++ {
			count[gramAt(c, e)] = 0
		}
	}
	for e := gramN - 1; e < trainLen; e++ {
		if _, ok := count[gramAt(corpus, e)]; ok {
			count[gramAt(corpus, e)]++
		}
	}
	n := float64(trainLen)
	for q, c := range contexts {
		seen := map[uint64]bool{}
		for e := gramN - 1; e < len(c); e++ {
			g := gramAt(c, e)
			if !seen[g] {
				seen[g] = true
				idf := math.Log(1 + (n-count[g]+0.5)/(count[g]+0.5))
				lx.grams[g] = append(lx.grams[g], gramHit{q, idf})
			}
		}
	}
	return lx
}

// bm25 scores each token of b for each query [n][Q]: BM25 (k1 1.2, b 0.75, term frequency
// counted linearly) of the token's context against the query's, for queries with its target.
func (lx *lexical) bm25(b *lm.Batch, score []float64) {
	const k1, bb = 1.2, 0.75
	clear(score)
	avg := float64(lx.ctx+1) / 2
	for r := 0; r < len(b.Tokens)/lx.ctx; r++ {
		clear(lx.run)
		row := b.Tokens[r*lx.ctx : (r+1)*lx.ctx]
		for p := range row {
			if p >= gramN-1 {
				for _, h := range lx.grams[gramAt(row, p)] {
					lx.run[h.q] += h.idf
				}
			}
			i := r*lx.ctx + p
			norm := (k1 + 1) / (1 + k1*(1-bb+bb*float64(p+1)/avg))
			for _, q := range lx.byTarget[b.Targets[i]] {
				score[i*lx.Q+q] = lx.run[q] * norm
			}
		}
	}
}

// suffix scores each token of b for each query with its target by the length of the
// n-gram the two share: the common suffix of their contexts plus the target.
func (lx *lexical) suffix(b *lm.Batch, score []float64) {
	clear(score)
	for i, t := range b.Targets {
		r, p := i/lx.ctx, i%lx.ctx
		ctx := b.Tokens[r*lx.ctx : r*lx.ctx+p+1]
		for _, q := range lx.byTarget[t] {
			qc := lx.contexts[q]
			n := 0
			for n < len(ctx) && n < len(qc) && ctx[len(ctx)-1-n] == qc[len(qc)-1-n] {
				n++
			}
			score[i*lx.Q+q] = float64(1 + n)
		}
	}
}

package query

import (
	"cmp"
	"context"
	"math"

	"github.com/spotlight-lm/spotlight/dualmem"
)

// prunedOmitted are the figures a pruned answer leaves out: each needs every token's own α
// or contribution (a sign, an absolute value, a per-passage sum, or the score of every
// training token that shared context), which the per-step aggregates do not keep.
var prunedOmitted = []string{"positive_total", "negative_total", "top_share", "timeline.abs_attention", "patterns", "passages"}

// prunedLayer answers every token of one layer with its totals, W0 and bias terms, timeline
// and dual check from the aggregates (Scanner.SumsSpans over the timeline's bins: no key is
// read for them) and its top list from topHits.
func (e *Engine) prunedLayer(ctx context.Context, req Request, lq layerQueries) ([]LayerAnswer, error) {
	sc, qs := lq.sc, lq.qs
	// The sums read the aggregates, the search the bounds and a few keys: run together,
	// they keep both cores busy through each other's serial parts.
	cuts := binCuts(len(sc.Mem.Steps), req.Bins)
	var sums []dualmem.Sums
	var sumErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		sums, sumErr = sc.SumsSpans(ctx, qs, lq.rg.from, lq.rg.to, cuts)
	}()
	ranked, read, err := topHits(ctx, sc, req, qs, lq.rg, lq.steps)
	<-done
	if err = cmp.Or(err, sumErr); err != nil {
		return nil, err
	}
	las := make([]LayerAnswer, len(qs))
	err = parallel(ctx, len(qs), func(i int) error {
		hits, rescored := distinctWindows(sc, ranked[i], req.TopK), 0
		if req.GroupBy == GroupPattern {
			sh := lq.shared[i]
			cls, err := sc.ScoreMembers(ctx, qs[i], sh.members(), memberTop(req))
			if err != nil {
				return err
			}
			var more int
			if hits, more, err = patternTop(ctx, sc, qs[i], sh, cls, ranked[i], req.RankBy == RankAttention, req.TopK); err != nil {
				return err
			}
			rescored = len(sh.js) + more
		}
		sm := &sums[i]
		la := e.hitsAnswer(sc, lq.name, qs[i], lq.objs[i], lq.probes[i], lq.targets[i], hits)
		la.W0Term, la.BiasTerm = sm.W0Term, sm.BiasTerm
		la.DualCheck.Dual = sm.Total()
		la.DualCheck.AbsErr = math.Abs(la.DualCheck.Primal - la.DualCheck.Dual)
		la.Timeline = binSpans(sc, cuts)
		for b := range la.Timeline {
			la.Timeline[b].Attention, la.Timeline[b].Contribution = sm.StepAlpha[b], sm.StepContribution[b]
		}
		rescored += positionTokens(la.ByOffset)
		la.Scan = LayerScan{Mode: ScanPruned, ScanStats: read.Plus(sm.Read).Plus(sc.TokensRead(rescored)),
			Omitted: prunedOmitted}
		las[i] = la
		return nil
	})
	return las, err
}

// topHits finds, per query, the best training tokens in range by the request's ranking
// (enough of them for TopK distinct windows) and what that read. It is the only part of a
// pruned answer that reads keys, and it reads only the blocks whose bounds can still enter
// the top list (dualmem.Search), with the same answer as a full scan. A query whose hits
// hold too few distinct windows (a memory that saw its corpus many times) is searched again
// with 8× as many, alone: each query's top list does not depend on the others of its batch.
// steps, if not nil, are the queries' step bounds, computed beforehand.
func topHits(ctx context.Context, sc *dualmem.Scanner, req Request, qs []dualmem.Query, rg tokens, steps []dualmem.StepBounds) ([][]dualmem.Hit, dualmem.ScanStats, error) {
	byAttention := req.RankBy == RankAttention
	opt := dualmem.SearchOptions{TopK: searchK(req), From: rg.from, To: rg.to,
		SkipAttention: !byAttention, SkipContribution: byAttention}
	read := sc.NoneRead()
	out := make([][]dualmem.Hit, len(qs))
	for todo := indices(len(qs)); len(todo) > 0; { // the queries to search, by index into qs
		opt.Steps = at(steps, todo)
		res, st, err := searchBatch(ctx, sc, qs, todo, opt)
		if err != nil {
			return nil, dualmem.ScanStats{}, err
		}
		read = read.Plus(st)
		read.BlocksTotal = st.BlocksTotal
		for k, i := range todo {
			out[i] = res[k].TopContribution
			if byAttention {
				out[i] = res[k].TopAttention
			}
		}
		todo = shortQueries(sc, req, out, todo, opt.TopK, rg.to-rg.from)
		opt.TopK *= 8
	}
	return out, read, nil
}

// searchK is how many hits topHits first searches for per query. Grouped by token, the top
// list is the first TopK hits of distinct windows in rank order, the same from any prefix of
// the ranking that holds TopK of them, so a short prefix serves, and a query short of
// distinct windows is searched again with more; the search's cost grows with its k-th
// best's rank. By contribution at 16M tokens the 10th distinct window is about the 10th hit;
// by attention the hits crowd into fewer windows, and the second searches cost more than the
// short prefix saves. Grouped by pattern, the top list draws on deeper hits: as many as the
// full scan keeps.
func searchK(req Request) int {
	if req.GroupBy == GroupToken && req.RankBy != RankAttention {
		return 2*req.TopK + 8
	}
	return memberTop(req)
}

// splitTokens is the fewest tokens in range for which searchBatch splits a search: below it
// a search is short, has few rounds to wait at, and prunes less, so the parts would mostly
// read blocks that one search's thresholds skip.
var splitTokens = 8 << 20

// searchBatch searches queries qs[todo] and returns their results in todo's order with
// what was read. On a large range it splits the search into one part per core over its share
// of the steps, sharing their thresholds (dualmem.SearchOptions.Split), so that no core
// waits for the other after every round. At 16M tokens on 2 cores it replaced one search
// over both cores by attention (0.55× the time, 1.13× the blocks) and, by contribution, a
// search per core over half the queries each, which read the blocks both halves need twice
// (0.86× the blocks, 0.85× the search's CPU time).
func searchBatch(ctx context.Context, sc *dualmem.Scanner, qs []dualmem.Query, todo []int, opt dualmem.SearchOptions) ([]dualmem.SearchResult, dualmem.ScanStats, error) {
	opt.Split = opt.To-opt.From >= splitTokens
	res, err := sc.Search(ctx, at(qs, todo), opt)
	if err != nil || len(res) == 0 {
		return nil, dualmem.ScanStats{}, err
	}
	return res, res[0].Stats, nil // one read serves the batch
}

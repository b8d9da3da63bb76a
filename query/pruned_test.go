package query

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// relClose reports whether a and b agree to tol relative to the larger of them (and 1e-12).
func relClose(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*math.Max(math.Max(math.Abs(a), math.Abs(b)), 1e-12)
}

// exactDuals is, per token of ans, W0 + bias + Σ contributions of the layer over memory
// tokens [from, to), every α and contribution in float64 from the keys (Scanner.Score).
func exactDuals(t *testing.T, e *Engine, ans *Answer, rankBy, layer string, from, to int) []float64 {
	t.Helper()
	ids, err := e.model.Tok.Encode(ans.Prompt + ans.Text)
	if err != nil {
		t.Fatal(err)
	}
	var contexts [][]int32
	var targets []int32
	for _, ta := range ans.Tokens {
		k := ta.Index // attribute: the position in the text
		if ans.Sampling != nil {
			k = len(ids) - len(ans.Tokens) + ta.Index
		}
		contexts, targets = append(contexts, ids[:k]), append(targets, ids[k])
	}
	probes, err := e.probe(context.Background(), contexts, targets, probeObjective[rankBy])
	if err != nil {
		t.Fatal(err)
	}
	sc := e.Scanner(layer)
	out := make([]float64, len(targets))
	for i, tok := range targets {
		q, _ := e.query(layer, rankBy, probes[i], tok)
		la := ans.Tokens[i].Layers[layer]
		out[i] = la.W0Term + la.BiasTerm
		for j := from; j < to; j++ {
			_, c := sc.Score(q, j)
			out[i] += c
		}
	}
	return out
}

// TestPrunedMatchesFull: a pruned answer's totals, W0 and bias terms, dual check and
// timeline equal a float64 reference from the keys and the full answer's (whose α are
// float32), its top list is the same, it leaves out and lists the figures that need every
// key, and both say what they read.
func TestPrunedMatchesFull(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, rankBy string
		answer       func(scan string) (*Answer, error)
		steps        []int
	}{
		{"generate", RankContribution, func(scan string) (*Answer, error) {
			return e.Generate(ctx, Request{Prompt: "The light ", Tokens: 4, Seed: 5, Scan: scan})
		}, nil},
		{"attention by token", RankAttention, func(scan string) (*Answer, error) {
			return e.Generate(ctx, Request{Prompt: "Colours ", Tokens: 3, RankBy: RankAttention, GroupBy: GroupToken, Scan: scan})
		}, nil},
		{"attribute margin steps", RankMargin, func(scan string) (*Answer, error) {
			return e.Attribute(ctx, AttributeRequest{Text: "The light of the sun", RankBy: RankMargin, Steps: []int{3, 12}, Bins: 5, Scan: scan})
		}, []int{3, 12}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full, err := tc.answer("")
			if err != nil {
				t.Fatal(err)
			}
			pruned, err := tc.answer(ScanPruned)
			if err != nil {
				t.Fatal(err)
			}
			if full.Text != pruned.Text || len(full.Tokens) != len(pruned.Tokens) {
				t.Fatalf("texts %q and %q", full.Text, pruned.Text)
			}
			var worst, worstExact float64
			exact := map[string][]float64{}
			for i, ft := range full.Tokens {
				for name, f := range ft.Layers {
					p := pruned.Tokens[i].Layers[name]
					sc := e.Scanner(name)
					from, to, _ := tokenRange(sc, tc.steps)
					if exact[name] == nil {
						exact[name] = exactDuals(t, e, pruned, tc.rankBy, name, from, to)
					}
					if ex := exact[name][i]; !relClose(p.DualCheck.Dual, ex, 1e-9) {
						t.Errorf("token %d %s: dual %.17g, float64 from the keys %.17g", i, name, p.DualCheck.Dual, ex)
					} else {
						worstExact = math.Max(worstExact, math.Abs(p.DualCheck.Dual-ex)/math.Abs(ex))
					}
					if f.Scan.Mode != ScanFull || f.Scan.Omitted != nil || p.Scan.Mode != ScanPruned || !slices.Equal(p.Scan.Omitted, prunedOmitted) {
						t.Fatalf("%s: scan %+v and %+v", name, f.Scan, p.Scan)
					}
					if f.W0Term != p.W0Term || f.BiasTerm != p.BiasTerm {
						t.Errorf("%s: terms %g %g, full %g %g", name, p.W0Term, p.BiasTerm, f.W0Term, f.BiasTerm)
					}
					if !relClose(p.DualCheck.Dual, f.DualCheck.Dual, 1e-5) || p.DualCheck.Primal != f.DualCheck.Primal {
						t.Errorf("token %d %s: dual %.17g, full %.17g", i, name, p.DualCheck.Dual, f.DualCheck.Dual)
					}
					worst = math.Max(worst, math.Abs(p.DualCheck.Dual-f.DualCheck.Dual)/math.Abs(f.DualCheck.Dual))
					if p.DualCheck.MaxAbsErr != f.DualCheck.MaxAbsErr {
						t.Errorf("%s: output vector err %g, full %g", name, p.DualCheck.MaxAbsErr, f.DualCheck.MaxAbsErr)
					}
					sum := p.W0Term + p.BiasTerm
					for b, fb := range f.Timeline {
						pb := p.Timeline[b]
						sum += pb.Contribution
						if pb.FromStep != fb.FromStep || pb.ToStep != fb.ToStep || pb.AbsAttention != nil || fb.AbsAttention == nil ||
							!relClose(pb.Attention, fb.Attention, 1e-5) || !relClose(pb.Contribution, fb.Contribution, 1e-5) {
							t.Errorf("%s bin %d: %+v, full %+v", name, b, pb, fb)
						}
					}
					if !relClose(sum, p.DualCheck.Dual, 1e-12) {
						t.Errorf("%s: timeline adds up to %g, dual %g", name, sum, p.DualCheck.Dual)
					}
					if !slices.Equal(p.Top, f.Top) || !slices.Equal(p.ByOffset, f.ByOffset) {
						t.Errorf("%s: top lists differ", name)
					}
					if p.PositiveTotal != nil || p.NegativeTotal != nil || p.TopShare != nil || p.Patterns != nil || p.Passages != nil {
						t.Errorf("%s: pruned answer holds a figure it omits", name)
					}
					if f.PositiveTotal == nil || f.TopShare == nil || f.Patterns == nil || f.Passages == nil {
						t.Errorf("%s: full answer lacks a figure", name)
					}
					all := int64(sc.N * 4 * (sc.DIn + sc.DOut))
					pass := int64((to - from) * 4 * (sc.DIn + sc.DOut))
					if f.Scan.BytesTotal != all || f.Scan.BlocksTotal != int64(len(sc.Mem.Steps)) || f.Scan.BytesRead <= pass ||
						f.Scan.BlocksRead < int64(len(sc.Mem.Steps)) && tc.steps == nil {
						t.Errorf("%s: full read %+v of %d; a pass reads %d", name, f.Scan.ScanStats, all, pass)
					}
					// The search reads int8 codes (at most DIn+DOut bytes a token) and re-reads
					// survivors: at most a quarter more than a pass where nothing prunes, for each of
					// the searches topHits runs (these cases need at most two: the second with a
					// larger k), plus the by_offset tokens.
					offset := int64(positionTokens(p.ByOffset) * 4 * (sc.DIn + sc.DOut))
					if p.Scan.BytesRead <= 0 || p.Scan.BytesRead > 2*pass*5/4+offset {
						t.Errorf("%s: pruned read %+v, full %+v", name, p.Scan.ScanStats, f.Scan.ScanStats)
					}
				}
			}
			t.Logf("largest relative difference of the dual totals: %.3g from the float64 reference, %.3g from the full answer", worstExact, worst)
			b, err := json.Marshal(pruned.Tokens[0].Layers["out"])
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{`"positive_total":null`, `"abs_attention":null`, `"patterns":null`,
				`"scan":{"mode":"pruned","bytes_read":`, `"omitted":["positive_total","negative_total","top_share","timeline.abs_attention","patterns","passages"]`} {
				if !strings.Contains(string(b), want) {
					t.Errorf("pruned JSON lacks %s: %.400s", want, b)
				}
			}
		})
	}
}

func TestScanModeBad(t *testing.T) {
	e := engine(t)
	_, err := e.Generate(context.Background(), Request{Prompt: "The ", Tokens: 1, Scan: "fast"})
	var ie *InputError
	if !errors.As(err, &ie) || ie.Field != "scan" || !strings.Contains(ie.Message, `unknown scan mode "fast" (known: full, pruned)`) {
		t.Fatalf("scan fast: %v", err)
	}
	_, err = e.Attribute(context.Background(), AttributeRequest{Text: "The light", Scan: "Pruned"})
	if !errors.As(err, &ie) || ie.Field != "scan" {
		t.Fatalf("scan Pruned: %v", err)
	}
}

// TestPrunedSplitMatchesFull: with the search split into a part per core (as on a large
// memory), pruned answers still hold the full scan's top lists, by_offset and totals, for
// one-hot and projection queries, by contribution and by attention, over the same blocks.
func TestPrunedSplitMatchesFull(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	reqs := []Request{
		{Prompt: "The light ", Tokens: 6, Seed: 5, GroupBy: GroupToken},
		{Prompt: "Colours ", Tokens: 5, RankBy: RankAttention, GroupBy: GroupToken},
		{Prompt: "The sun ", Tokens: 4, RankBy: RankMargin},
	}
	for _, req := range reqs {
		full, err := e.Generate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		req.Scan = ScanPruned
		one, err := e.Generate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		saved := splitTokens
		splitTokens = 0
		split, err := e.Generate(ctx, req)
		splitTokens = saved
		if err != nil {
			t.Fatal(err)
		}
		for i, ft := range full.Tokens {
			for name, f := range ft.Layers {
				p, o := split.Tokens[i].Layers[name], one.Tokens[i].Layers[name]
				if !slices.Equal(p.Top, f.Top) || !slices.Equal(p.ByOffset, f.ByOffset) {
					t.Errorf("%s %s token %d: top lists differ from the full scan's", req.RankBy, name, i)
				}
				if p.W0Term != o.W0Term || p.BiasTerm != o.BiasTerm || p.DualCheck != o.DualCheck {
					t.Errorf("%s %s token %d: totals %+v, one search %+v", req.RankBy, name, i, p.DualCheck, o.DualCheck)
				}
				if p.Scan.BlocksTotal != o.Scan.BlocksTotal || p.Scan.BytesTotal != o.Scan.BytesTotal {
					t.Errorf("%s %s: split read %+v, one search %+v", req.RankBy, name, p.Scan.ScanStats, o.Scan.ScanStats)
				}
			}
		}
	}
}

// TestPrunedShortPrefix: grouped by token and ranked by contribution (or margin), the
// search first asks for a short prefix of the ranking (searchK); where it holds too few
// distinct windows (some query here does), the query is searched again with more, and the
// top lists stay the full scan's.
func TestPrunedShortPrefix(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	for _, rank := range []string{RankContribution, RankMargin} {
		req := Request{Prompt: "The light ", Tokens: 4, Seed: 3, TopK: 30, GroupBy: GroupToken, RankBy: rank, Layers: []string{lm.OutLayer}}
		if err := req.Normalize(e.model.Cfg); err != nil {
			t.Fatal(err)
		}
		full, err := e.Generate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		req.Scan = ScanPruned
		pruned, err := e.Generate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		sc := e.Scanner(lm.OutLayer)
		var qs []dualmem.Query
		for _, tk := range pruned.Tokens {
			if len(tk.Layers[lm.OutLayer].Top) != req.TopK {
				t.Fatalf("%s: %d hits, want %d", rank, len(tk.Layers[lm.OutLayer].Top), req.TopK)
			}
		}
		// The first search's lists: some query must be short, or this tests nothing.
		probes, err := e.probe(ctx, generatedContexts(encodeAll(t, e, req.Prompt), encodeAll(t, e, pruned.Text)), encodeAll(t, e, pruned.Text), probeObjective[rank])
		if err != nil {
			t.Fatal(err)
		}
		tg := encodeAll(t, e, pruned.Text)
		for i, p := range probes {
			q, _ := e.query(lm.OutLayer, rank, p, tg[i])
			qs = append(qs, q)
		}
		if searchK(req) >= 4*req.TopK+64 {
			t.Fatalf("%s: searchK %d is no shorter than the full scan's", rank, searchK(req))
		}
		first, err := sc.Search(ctx, qs, dualmem.SearchOptions{TopK: searchK(req), SkipAttention: true})
		if err != nil {
			t.Fatal(err)
		}
		lists := make([][]dualmem.Hit, len(first))
		all := make([]int, len(first))
		for i, r := range first {
			lists[i], all[i] = r.TopContribution, i
		}
		if len(shortQueries(sc, req, lists, all, searchK(req), sc.N)) == 0 {
			t.Fatalf("%s: no query short of distinct windows at k = %d", rank, searchK(req))
		}
		for i, ft := range full.Tokens {
			f, p := ft.Layers[lm.OutLayer], pruned.Tokens[i].Layers[lm.OutLayer]
			if !slices.Equal(p.Top, f.Top) || !slices.Equal(p.ByOffset, f.ByOffset) {
				t.Errorf("%s token %d: top lists differ from the full scan's", rank, i)
			}
		}
	}
}

func encodeAll(t *testing.T, e *Engine, s string) []int32 {
	ids, err := e.model.Tok.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

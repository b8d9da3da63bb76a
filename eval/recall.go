package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// view is one way of reading an answer's evidence: a grouping (the top tokens, the top
// tokens grouped by shared context, the top passages, or the top tokens of the second half
// of training) and a ranking.
type view struct {
	group string // "token", "pattern", "passage", "late" or "random"
	rank  string // a query ranking; "" for random
}

func (v view) name() string {
	if v.group == "random" {
		return "random"
	}
	return v.group + "/" + v.rank
}

// views lists every view the canary experiment measures.
func views() []view {
	var vs []view
	for _, g := range []string{"token", "pattern", "passage", "late"} {
		for _, r := range query.Rankings {
			if g == "passage" && r == query.RankAttention {
				continue // passages are ordered by contribution whatever the ranking
			}
			vs = append(vs, view{g, r})
		}
	}
	return append(vs, view{group: "random"})
}

// defaultView is the view an answer leads with when a request sets nothing.
func defaultView() view {
	d := query.DefaultGenerate()
	return view{d.GroupBy, d.RankBy}
}

// canaries teacher-forces each fact's prefix and code (Engine.Attribute) and checks, for every
// view, whether the first k items of each code character's evidence include one of the
// fact's occurrences: a training token whose target lies in one, or a passage overlapping one.
func canaries(ctx context.Context, eng *query.Engine, tr *lm.Trainer, facts []Fact, opts Options, rng *rand.Rand, rep *Report) error {
	maxK := slicesMax(opts.RecallKs)
	offsets := eng.Scanner(lm.OutLayer).Mem.Offsets // training token index → corpus offset of its target
	trained := map[int64]bool{}
	for _, off := range offsets {
		trained[off] = true
	}
	type tally struct{ hits, n map[string]map[int]float64 }
	newTally := func() tally {
		t := tally{map[string]map[int]float64{}, map[string]map[int]float64{}}
		for _, v := range views() {
			t.hits[v.name()], t.n[v.name()] = map[int]float64{}, map[int]float64{}
		}
		return t
	}
	all, pred, unpred := newTally(), newTally(), newTally()
	var covered, chars, predicted int
	half := tr.Step/2 + 1
	for _, fact := range facts {
		runes := []rune(fact.Text)
		end := fact.CodeAt + len([]rune(fact.Code))
		for p := fact.CodeAt; p < end; p++ {
			for _, sp := range fact.Spans {
				if trained[sp[0]+int64(p)] {
					covered++
					break
				}
			}
		}
		text := string(runes[:end])
		// One answer per (grouping, step range, ranking), for the code characters only; the
		// passage view reads the token view's answer.
		var positions []int
		for p := fact.CodeAt; p < end; p++ {
			positions = append(positions, p)
		}
		answers := map[string]*query.Answer{}
		for _, v := range views() {
			key := answerKey(v)
			if v.group == "random" || answers[key] != nil {
				continue
			}
			req := outRequest(text, maxK, v.rank)
			req.Passages = maxK
			switch v.group {
			case "pattern":
				req.GroupBy = query.GroupPattern
			case "late":
				req.Steps = []int{half, tr.Step}
			}
			ans, err := eng.AttributeAt(ctx, req, positions)
			if err != nil {
				return err
			}
			answers[key] = ans
		}
		for p := fact.CodeAt; p < end; p++ {
			tok := answers[answerKey(view{"token", query.RankContribution})].Tokens[p-fact.CodeAt]
			if tok.Token != string(runes[p]) {
				return fmt.Errorf("eval: attribution of %q scored %q at %d, want %q", text, tok.Token, p, string(runes[p]))
			}
			chars++
			split := unpred
			if tok.Prob > 0.5 {
				split, predicted = pred, predicted+1
			}
			for _, v := range views() {
				found := evidence(v, answers[answerKey(v)], p-fact.CodeAt, rng, offsets, maxK)
				for _, k := range opts.RecallKs {
					hit := 0.0
					for _, sp := range found[:min(k, len(found))] {
						if fact.Overlaps(sp[0], sp[1]) {
							hit = 1
							break
						}
					}
					for _, t := range []tally{all, split} {
						t.hits[v.name()][k] += hit
						t.n[v.name()][k]++
					}
				}
			}
			la := tok.Layers[lm.OutLayer]
			rep.Detail.DualMaxAbsErr = math.Max(rep.Detail.DualMaxAbsErr, la.DualCheck.AbsErr)
		}
	}
	table := func(t tally) map[string]map[string]Num {
		out := map[string]map[string]Num{}
		for _, v := range views() {
			out[v.name()] = map[string]Num{}
			for _, k := range opts.RecallKs {
				r := math.NaN()
				if n := t.n[v.name()][k]; n > 0 {
					r = t.hits[v.name()][k] / n
				}
				out[v.name()][strconv.Itoa(k)] = Num(r)
			}
		}
		return out
	}
	c := &rep.Canaries
	c.Recall, c.Predicted, c.Unpredicted = table(all), table(pred), table(unpred)
	c.Chars = map[string]int{"all": chars, "predicted": predicted, "unpredicted": chars - predicted}
	dv := defaultView().name()
	c.Default = DefaultView{Name: dv, R1: c.Recall[dv]["1"], R10: c.Recall[dv]["10"]}
	rep.Detail.CodeTrained = float64(covered) / float64(chars)
	opts.Log("canaries: %d facts × %d occurrences scanned over %d training tokens; %.3f of code characters were trained on "+
		"at least once; default view %s recall@1 %.3f", len(facts), opts.Reps, rep.Detail.MemoryTokens, rep.Detail.CodeTrained,
		dv, float64(c.Default.R1))
	return nil
}

// answerKey names the answer a view reads: passages come with every answer.
func answerKey(v view) string {
	if v.group == "passage" {
		return "token/" + v.rank
	}
	return v.name()
}

// evidence lists the corpus spans [start, end) a view shows for answer token i, best
// first: one character per training token, a whole passage per passage.
func evidence(v view, ans *query.Answer, i int, rng *rand.Rand, offsets []int64, k int) [][2]int64 {
	var out [][2]int64
	switch v.group {
	case "random":
		for _, j := range randomTokens(rng, len(offsets), k) {
			out = append(out, [2]int64{offsets[j], offsets[j] + 1})
		}
	case "passage":
		for _, ps := range ans.Tokens[i].Layers[lm.OutLayer].Passages {
			out = append(out, [2]int64{ps.Start, ps.End})
		}
	default:
		for _, e := range ans.Tokens[i].Layers[lm.OutLayer].Top {
			out = append(out, [2]int64{e.Offset, e.Offset + 1})
		}
	}
	return out
}

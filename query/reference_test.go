package query

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"slices"
	"testing"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// The evidence as it was computed before the members' scores came from the scan: the
// members found through the suffix array, in its order, each scored on its own, one token
// and one layer at a time; each class's sum adds its members in memory order. The engine
// must give the same answer, bit for bit.

type refMember struct {
	j     int32
	n     int
	alpha float64
	c     float64
}

func (m refMember) hit() dualmem.Hit {
	return dualmem.Hit{Index: int(m.j), Alpha: m.alpha, Contribution: m.c}
}

func (m refMember) score(byAttention bool) float64 {
	if byAttention {
		return math.Abs(m.alpha)
	}
	return m.c
}

func refBest(ms []refMember, k int, byAttention bool) []refMember {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b refMember) int {
		if sa, sb := a.score(byAttention), b.score(byAttention); sa != sb {
			if sa > sb {
				return -1
			}
			return 1
		}
		return int(a.j - b.j)
	})
	return out[:min(k, len(out))]
}

func refByShared(ms []refMember) [][]refMember {
	longest := 0
	for _, m := range ms {
		longest = max(longest, m.n)
	}
	out := make([][]refMember, longest+1)
	for _, m := range ms {
		out[m.n] = append(out[m.n], m)
	}
	for _, c := range out {
		slices.SortFunc(c, func(a, b refMember) int { return int(a.j - b.j) })
	}
	return out
}

func (e *Engine) refShared(sc *dualmem.Scanner, ctx []rune, rg tokens) []refMember {
	if len(ctx) == 0 {
		return nil
	}
	last := len(ctx) - 1
	var out []refMember
	for _, b := range e.sa.Lookup([]byte(string(ctx[last])), -1) {
		off := int64(e.runeAt[b]) + 1
		for _, j := range sc.SameOffset(off) {
			if !rg.has(j) {
				continue
			}
			seen := int(sc.Mem.Pos[j]) + 1
			n := 1
			for n < seen && n < len(ctx) && off-int64(n)-1 >= 0 && e.corpus[off-int64(n)-1] == ctx[last-n] {
				n++
			}
			out = append(out, refMember{j: j, n: n})
		}
	}
	return out
}

func refScored(sc *dualmem.Scanner, q dualmem.Query, ms []refMember) []refMember {
	out := make([]refMember, len(ms))
	for i, m := range ms {
		a, c := make([]float64, 1), make([]float64, 1)
		sc.Scores(q, []int32{m.j}, a, c)
		out[i] = refMember{j: m.j, n: m.n, alpha: a[0], c: c[0]}
	}
	return out
}

func (e *Engine) refPatterns(sc *dualmem.Scanner, r *dualmem.Result, members []refMember, ctx []rune, target int32, rg tokens) []Pattern {
	var alpha0 float64
	for _, a := range r.StepAlpha {
		alpha0 += a
	}
	same0 := 0
	for j := rg.from; j < rg.to; j++ {
		if sc.Mem.Targets[j] == target {
			same0++
		}
	}
	rows := []Pattern{{N: 0, Count: rg.to - rg.from, SameTarget: same0, Contribution: r.Positive + r.Negative,
		Alpha: alpha0, Examples: []Entry{}}}
	for _, h := range r.TopContribution[:min(PatternExamples, len(r.TopContribution))] {
		rows[0].Examples = append(rows[0].Examples, e.entry(sc, h))
	}
	byN := refByShared(members)
	acc := Pattern{}
	tail := make([]Pattern, len(byN))
	for n := len(byN) - 1; n >= 1; n-- {
		var alpha, c float64
		for _, m := range byN[n] {
			acc.Count++
			c += m.c
			alpha += m.alpha
			if sc.Mem.Targets[m.j] == target {
				acc.SameTarget++
			}
		}
		acc.Contribution += c
		acc.Alpha += alpha
		row := acc
		row.N, row.Suffix = n, string(ctx[len(ctx)-n:])
		row.Examples = []Entry{}
		for _, m := range refBest(byN[n], PatternExamples, false) {
			row.Examples = append(row.Examples, e.entry(sc, m.hit()))
		}
		tail[n] = row
	}
	return append(rows, tail[1:]...)
}

func refPatternTop(sc *dualmem.Scanner, members []refMember, ranked []dualmem.Hit, byAttention bool, k int) []dualmem.Hit {
	classes := refByShared(members)
	var hits []dualmem.Hit
	for n := len(classes) - 1; n >= 1; n-- {
		for _, m := range refBest(classes[n], len(classes[n]), byAttention) {
			hits = append(hits, m.hit())
		}
		if got := distinctWindows(sc, hits, k); len(got) == k {
			return got
		}
	}
	return distinctWindows(sc, append(hits, ranked...), k)
}

// refExplain is explain, one token and one layer at a time, with the reference evidence.
func (e *Engine) refExplain(ctx context.Context, req Request, contexts [][]int32, targets []int32) (*Answer, error) {
	probes, err := e.probe(ctx, contexts, targets, probeObjective[req.RankBy])
	if err != nil {
		return nil, err
	}
	ans := &Answer{Step: e.model.Step, Tokens: make([]TokenAnswer, len(targets))}
	for i, tok := range targets {
		ans.Tokens[i] = TokenAnswer{Index: i, Token: e.model.Tok.DecodeOne(tok), Prob: lm.Probabilities(probes[i].Logits, 1)[tok],
			Layers: map[string]LayerAnswer{}, Verbatim: e.verbatim(contexts[i])}
		for _, name := range req.Layers {
			sc := e.layers[name]
			from, to, err := tokenRange(sc, req.Steps)
			if err != nil {
				return nil, err
			}
			rg := tokens{from, to}
			q, obj := e.query(name, req.RankBy, probes[i], tok)
			opt := dualmem.ScanOptions{TopK: 4*req.TopK + 64, From: from, To: to,
				Groups: e.passageOf, NGroups: len(e.pass.starts) - 1}
			res, err := sc.Scan(ctx, []dualmem.Query{q}, opt)
			for err == nil && len(shortQueries(sc, req, rankedLists(req, res), []int{0}, opt.TopK, to-from)) > 0 {
				opt.TopK *= 8
				res, err = sc.Scan(ctx, []dualmem.Query{q}, opt)
			}
			if err != nil {
				return nil, err
			}
			r := &res[0]
			ranked := r.TopContribution
			if req.RankBy == RankAttention {
				ranked = r.TopAttention
			}
			members := refScored(sc, q, e.refShared(sc, e.window(contexts[i]), rg))
			hits := distinctWindows(sc, ranked, req.TopK)
			if req.GroupBy == GroupPattern {
				hits = refPatternTop(sc, members, ranked, req.RankBy == RankAttention, req.TopK)
			}
			la := e.layerAnswer(sc, name, req, q, obj, r, probes[i], tok, hits)
			la.Patterns = e.refPatterns(sc, r, members, e.window(contexts[i]), tok, rg)
			if la.Passages, err = e.topPassages(ctx, sc, q, r, req.Passages, rg); err != nil {
				return nil, err
			}
			ans.Tokens[i].Layers[name] = la
		}
	}
	return ans, nil
}

// TestEvidenceMatchesReference compares whole answers with the reference's as JSON, every
// field and every digit. With one worker a scan sums its blocks in one order (with more, the
// order of the workers' partial sums varies from run to run in the last bits).
func TestEvidenceMatchesReference(t *testing.T) {
	e := engine(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	tests := []Request{
		{Prompt: "The light ", Tokens: 16},
		{Prompt: "Colours of ", Tokens: 6, TopK: 30, RankBy: RankAttention, GroupBy: GroupToken, Passages: 5},
		{Prompt: "the Rays", Tokens: 5, TopK: 4, RankBy: RankMargin, Steps: []int{4, 15}},
		{Prompt: "of the ", Tokens: 5, RankBy: RankLogp, Layers: []string{"out"}, Temperature: temperature(0)},
	}
	for _, req := range tests {
		t.Run(fmt.Sprintf("%s/%s/%v", req.RankBy, req.GroupBy, req.Steps), func(t *testing.T) {
			got, err := e.Generate(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if err := req.Normalize(e.model.Cfg); err != nil {
				t.Fatal(err)
			}
			seq, err := e.encode("prompt", req.Prompt+got.Text)
			if err != nil {
				t.Fatal(err)
			}
			n := len([]rune(req.Prompt))
			contexts := make([][]int32, len(seq)-n)
			for i := range contexts {
				contexts[i] = seq[:n+i]
			}
			want, err := e.refExplain(context.Background(), req, contexts, seq[n:])
			if err != nil {
				t.Fatal(err)
			}
			want.Prompt, want.Text, want.Sampling = req.Prompt, got.Text, req.sampling()
			// The reference predates the read counts (checked by the scan tests).
			for _, tok := range got.Tokens {
				for name, la := range tok.Layers {
					la.Scan = LayerScan{}
					tok.Layers[name] = la
				}
			}
			sameJSON(t, got, want)
		})
	}
}

// sameJSON fails unless a and b encode to the same JSON, and names the fields that differ.
func sameJSON(t *testing.T, a, b any) {
	t.Helper()
	var x, y any
	for _, p := range []struct {
		v   any
		out *any
	}{{a, &x}, {b, &y}} {
		buf, err := json.Marshal(p.v)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(buf, p.out); err != nil {
			t.Fatal(err)
		}
	}
	var diffs []string
	var walk func(path string, x, y any)
	walk = func(path string, x, y any) {
		switch xv := x.(type) {
		case map[string]any:
			yv, ok := y.(map[string]any)
			if !ok || len(xv) != len(yv) {
				diffs = append(diffs, path+": different objects")
				return
			}
			for k, v := range xv {
				walk(path+"."+k, v, yv[k])
			}
		case []any:
			yv, ok := y.([]any)
			if !ok || len(xv) != len(yv) {
				diffs = append(diffs, fmt.Sprintf("%s: %d items, want %d", path, len(xv), len(yv)))
				return
			}
			for i := range xv {
				walk(fmt.Sprintf("%s[%d]", path, i), xv[i], yv[i])
			}
		default:
			if x != y {
				diffs = append(diffs, fmt.Sprintf("%s: %v, want %v", path, x, y))
			}
		}
	}
	walk("", x, y)
	for _, d := range diffs[:min(10, len(diffs))] {
		t.Error(d)
	}
	if len(diffs) > 10 {
		t.Errorf("and %d more differences", len(diffs)-10)
	}
}

// A class whose best tokens hold too few distinct windows is scored again from its
// members: with room for only two of each class's best, the top list grouped by pattern is
// still the reference's.
func TestPatternTopScoresClassesAgain(t *testing.T) {
	e := engine(t)
	sc := e.Scanner("out")
	all := tokens{0, sc.N}
	rescoredAny := false
	for _, prompt := range []string{"The light ", "of the Rays", "Colours"} {
		seq, err := e.encode("prompt", prompt)
		if err != nil {
			t.Fatal(err)
		}
		probes, err := e.probe(context.Background(), [][]int32{seq}, []int32{seq[0]}, lm.ObjLogit)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := e.query("out", RankContribution, probes[0], seq[0])
		ctx := e.window(seq)
		sh, err := e.shared(context.Background(), sc, ctx, seq[0], all)
		if err != nil {
			t.Fatal(err)
		}
		res, err := sc.Scan(context.Background(), []dualmem.Query{q}, dualmem.ScanOptions{TopK: 2, Members: []dualmem.Members{sh.members()}})
		if err != nil {
			t.Fatal(err)
		}
		members := refScored(sc, q, e.refShared(sc, ctx, all))
		for _, byAttention := range []bool{false, true} {
			ranked := res[0].TopContribution
			if byAttention {
				ranked = res[0].TopAttention
			}
			got, rescored, err := patternTop(context.Background(), sc, q, sh, res[0].Classes, ranked, byAttention, 8)
			if err != nil {
				t.Fatal(err)
			}
			rescoredAny = rescoredAny || rescored > 0
			if want := refPatternTop(sc, members, ranked, byAttention, 8); !slices.Equal(got, want) {
				t.Errorf("%q attention=%v: pattern top %v, want %v", prompt, byAttention, got, want)
			}
		}
	}
	if !rescoredAny {
		t.Error("no class was scored again")
	}
}

package query

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/spotlight-lm/spotlight/dualmem"
)

// TestPatternsAndPassagesMatchBruteForce checks every pattern class and the top passages
// against sums over the whole memory, for the exact layer and a first-order one.
func TestPatternsAndPassagesMatchBruteForce(t *testing.T) {
	e := engine(t)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, layer := range []string{"out", "block0.ff1"} {
		sc := e.Scanner(layer)
		// The window of a trained token, so that long classes exist.
		j0 := rng.IntN(sc.N)
		for sc.Mem.Pos[j0] < 11 {
			j0 = rng.IntN(sc.N)
		}
		off := sc.Mem.Offsets[j0]
		ctxRunes := e.corpus[off-12 : off]
		x := make([]float32, sc.DIn)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		q := dualmem.Query{X: x, Token: 3}
		if layer != "out" {
			u := make([]float32, sc.DOut)
			for i := range u {
				u[i] = float32(rng.NormFloat64())
			}
			q = dualmem.Query{X: x, U: u, Token: -1}
		}
		G := len(e.pass.starts) - 1
		target := sc.Mem.Targets[0]
		all := tokens{0, sc.N}
		sh, err := e.shared(context.Background(), sc, ctxRunes, target, all)
		if err != nil {
			t.Fatal(err)
		}
		res, err := sc.Scan(context.Background(), []dualmem.Query{q}, dualmem.ScanOptions{TopK: 5, Groups: e.passageOf, NGroups: G,
			Members: []dualmem.Members{sh.members()}})
		if err != nil {
			t.Fatal(err)
		}
		r := &res[0]
		rows := e.patterns(sc, r, sh, r.Classes, ctxRunes, target, all)
		if rows[0].N != 0 || rows[0].Count != sc.N {
			t.Fatalf("%s: first row %+v, want n=0 over %d tokens", layer, rows[0], sc.N)
		}
		if got, want := rows[0].Contribution, r.Positive+r.Negative; math.Abs(got-want) > 1e-6*math.Abs(want) {
			t.Errorf("%s: n=0 contribution %g, totals %g", layer, got, want)
		}
		if len(rows) < 12 {
			t.Fatalf("%s: only %d pattern rows for a context taken from the corpus", layer, len(rows))
		}
		// Brute force: the shared length of every token's own window with the query's.
		count := make([]int, len(rows))
		contrib, same := make([]float64, len(rows)), make([]int, len(rows))
		for j := range sc.N {
			o, pos := sc.Mem.Offsets[j], int64(sc.Mem.Pos[j])
			win := e.corpus[o-pos-1 : o]
			n := 0
			for n < len(win) && n < len(ctxRunes) && win[len(win)-1-n] == ctxRunes[len(ctxRunes)-1-n] {
				n++
			}
			_, c := sc.Score(q, j)
			for k := 0; k <= n && k < len(rows); k++ {
				count[k]++
				contrib[k] += c
				if sc.Mem.Targets[j] == target {
					same[k]++
				}
			}
			if n >= len(rows) {
				t.Fatalf("%s: token %d shares %d characters, but only %d rows", layer, j, n, len(rows))
			}
		}
		for k, row := range rows {
			if row.N != k || row.Suffix != string(ctxRunes[len(ctxRunes)-k:]) {
				t.Fatalf("%s: row %d is n=%d %q", layer, k, row.N, row.Suffix)
			}
			if row.Count != count[k] || row.SameTarget != same[k] {
				t.Errorf("%s n=%d: count %d same %d, brute force %d %d", layer, k, row.Count, row.SameTarget, count[k], same[k])
			}
			if math.Abs(row.Contribution-contrib[k]) > 1e-6*(1+math.Abs(contrib[0])) {
				t.Errorf("%s n=%d: contribution %g, brute force %g", layer, k, row.Contribution, contrib[k])
			}
			if k > 0 && row.Count > 0 && len(row.Examples) == 0 && rows[min(k+1, len(rows)-1)].Count < row.Count {
				t.Errorf("%s n=%d: no examples", layer, k)
			}
		}

		// Grouped by pattern, the top list starts with the longest shared context.
		top, _, err := patternTop(context.Background(), sc, q, sh, r.Classes, r.TopContribution, false, 5)
		if err != nil {
			t.Fatal(err)
		}
		longest := sh.longest()
		for i, h := range top {
			n := -1
			if slices.Contains(sh.js, int32(h.Index)) {
				n = 1
			}
			for _, c := range sh.deep {
				if int(c.Token) == h.Index {
					n = int(c.Class) + 1
				}
			}
			if i == 0 && n != longest {
				t.Errorf("%s: pattern top starts with a token sharing %d characters, longest %d", layer, n, longest)
			}
		}

		ps, err := e.topPassages(context.Background(), sc, q, r, DefaultGenerate().Passages, all)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != DefaultGenerate().Passages {
			t.Fatalf("%s: %d passages", layer, len(ps))
		}
		sums := make([]float64, G)
		for j := range sc.N {
			_, c := sc.Score(q, j)
			sums[e.passageOf[j]] += c
		}
		best := math.Inf(-1)
		for _, s := range sums {
			best = math.Max(best, s)
		}
		if math.Abs(ps[0].Contribution-best) > 1e-6*(1+math.Abs(best)) {
			t.Errorf("%s: top passage %g, brute force best %g", layer, ps[0].Contribution, best)
		}
		for i, p := range ps {
			if i > 0 && p.Contribution > ps[i-1].Contribution {
				t.Errorf("%s: passages out of order", layer)
			}
			var tok, abs float64
			for _, c := range p.Tokens {
				tok += c
				abs += math.Abs(c)
			}
			// Per-character values keep 4 significant digits.
			if math.Abs(tok-p.Contribution) > 1e-3*abs+1e-12 {
				t.Errorf("%s: passage %d tokens sum to %g, passage %g", layer, i, tok, p.Contribution)
			}
			if int64(len([]rune(p.Text))) != p.End-p.Start || len(p.Tokens) != len([]rune(p.Text)) {
				t.Errorf("%s: passage %d [%d,%d) text %d chars, %d token values", layer, i, p.Start, p.End, len([]rune(p.Text)), len(p.Tokens))
			}
		}
	}
}

func TestPassageSplit(t *testing.T) {
	long := make([]rune, 0, 1000)
	for len(long) < 900 {
		long = append(long, []rune("word ")...)
	}
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"sentences", "One two. Three? Four!\nFive", []string{"One two. ", "Three? ", "Four!\n", "Five"}},
		{"abbreviation-like dot inside a word", "a.b c. d", []string{"a.b c. ", "d"}},
		{"blank line", "line one\nline two\n\nnext", []string{"line one\nline two\n\n", "next"}},
		{"trailing dot", "end.", []string{"end."}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := []rune(tt.text)
			starts, of := passages(c)
			var got []string
			for i := 0; i+1 < len(starts); i++ {
				got = append(got, string(c[starts[i]:starts[i+1]]))
				for o := starts[i]; o < starts[i+1]; o++ {
					if of[o] != int32(i) {
						t.Fatalf("offset %d in passage %d, want %d", o, of[o], i)
					}
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
	t.Run("long sentence is cut at a space", func(t *testing.T) {
		starts, _ := passages(long)
		for i := 0; i+1 < len(starts); i++ {
			n := starts[i+1] - starts[i]
			if n > MaxPassageChars || (i+2 < len(starts) && long[starts[i+1]-1] != ' ') {
				t.Fatalf("passage %d has %d chars, ends %q", i, n, long[starts[i+1]-1])
			}
		}
	})
}

func TestRankingsAndStepRange(t *testing.T) {
	e := engine(t)
	tests := []struct {
		rank, objective string
		steps           []int
		firstOrder      bool
	}{
		{RankContribution, "logit", nil, false},
		{RankMargin, "margin", nil, false},
		{RankLogp, "logp", nil, true},
		{RankAttention, "logit", []int{11, 20}, false},
		{RankMargin, "margin", []int{3, 3}, false},
	}
	for _, tt := range tests {
		t.Run(tt.rank+fmtSteps(tt.steps), func(t *testing.T) {
			ans, err := e.Attribute(context.Background(), AttributeRequest{Text: "The light of the", TopK: 6, RankBy: tt.rank, Bins: 3, Steps: tt.steps})
			if err != nil {
				t.Fatal(err)
			}
			for _, ta := range ans.Tokens {
				for name, la := range ta.Layers {
					dc := la.DualCheck
					if name != "out" && (!la.FirstOrder || la.Objective != tt.objective ||
						(tt.steps == nil && dc.AbsErr > 1e-4*(1+math.Abs(dc.Primal)))) {
						t.Errorf("%s %q: objective %q first-order %v dual check %+v", name, ta.Token, la.Objective, la.FirstOrder, dc)
					}
				}
				la := ta.Layers["out"]
				if la.Objective != tt.objective || la.FirstOrder != tt.firstOrder {
					t.Fatalf("objective %q first-order %v", la.Objective, la.FirstOrder)
				}
				if (la.RunnerUp != "") != (tt.rank == RankMargin) || la.RunnerUp == ta.Token {
					t.Fatalf("runner-up %q for %q", la.RunnerUp, ta.Token)
				}
				dc := la.DualCheck
				if tt.steps == nil && dc.AbsErr > 1e-4*(1+math.Abs(dc.Primal)) {
					t.Errorf("%q: dual check %+v", ta.Token, dc)
				}
				for _, en := range la.Top {
					if tt.steps != nil && (en.Step < tt.steps[0] || en.Step > tt.steps[1]) {
						t.Errorf("entry from step %d outside %v", en.Step, tt.steps)
					}
				}
				if tt.steps != nil && la.Patterns[0].Count != e.model.Cfg.Batch*e.model.Cfg.Ctx*(tt.steps[1]-tt.steps[0]+1) {
					t.Errorf("n=0 class counts %d tokens in steps %v", la.Patterns[0].Count, tt.steps)
				}
			}
		})
	}
	for _, steps := range [][]int{{0, 3}, {5, 4}, {1, 21}, {1, 2, 3}} {
		if _, err := e.Attribute(context.Background(), AttributeRequest{Text: "The light", Layers: []string{"out"}, Steps: steps}); !IsInputError(err) {
			t.Errorf("steps %v: %v, want an input error", steps, err)
		}
	}
}

func fmtSteps(s []int) string {
	if s == nil {
		return ""
	}
	return fmt.Sprintf("/steps%d-%d", s[0], s[1])
}

// AttributeAt answers the chosen positions exactly as Attribute answers them in full.
func TestAttributeAt(t *testing.T) {
	e := engine(t)
	req := AttributeRequest{Text: "The light of", TopK: 4, Layers: []string{"out"}}
	all, err := e.Attribute(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	some, err := e.AttributeAt(context.Background(), req, []int{9, 2})
	if err != nil {
		t.Fatal(err)
	}
	for k, i := range []int{9, 2} {
		got, want := some.Tokens[k], all.Tokens[i-1]
		if got.Index != i || got.Token != want.Token || got.Prob != want.Prob ||
			got.Layers["out"].Top[0] != want.Layers["out"].Top[0] {
			t.Errorf("position %d: %+v, want %+v", i, got.Layers["out"].Top[0], want.Layers["out"].Top[0])
		}
	}
	for _, pos := range [][]int{{0}, {12}, {-1}} {
		if _, err := e.AttributeAt(context.Background(), req, pos); !IsInputError(err) {
			t.Errorf("positions %v: %v, want an input error", pos, err)
		}
	}
}

package query

import (
	"context"
	"math"
	"sort"

	"github.com/spotlight-lm/spotlight/dualmem"
)

// Pattern is one class of training tokens by how much of the query's context they shared:
// every training token whose preceding N characters (within the window the model saw) equal
// the query's last N. The classes are nested (N = 0 is every token), so a reader sees how
// much of the total came from tokens that had seen the same text.
type Pattern struct {
	N            int     `json:"n"`      // characters of context shared with the query
	Suffix       string  `json:"suffix"` // those characters: the query's last N
	Count        int     `json:"count"`  // training tokens in the class (every position and epoch)
	SameTarget   int     `json:"same_target"`
	Contribution float64 `json:"contribution"` // Σ contribution of the class
	Alpha        float64 `json:"alpha"`        // Σ α of the class
	// Examples are the class's largest contributions among the tokens that shared exactly
	// N characters (the next class holds the others), most positive first.
	Examples []Entry `json:"examples"`
}

// PatternExamples is how many examples a pattern row carries.
const PatternExamples = 3

// member is a training token that shared at least one character of context with the query.
type member struct {
	j     int32
	n     int // characters shared
	alpha float64
	c     float64
}

// tokens is a range [from, to) of memory token indices: the training steps an answer covers.
type tokens struct{ from, to int }

func (r tokens) has(j int32) bool { return int(j) >= r.from && int(j) < r.to }

// patterns builds the nested classes for one token and layer from the members (matches) of
// the query's context; target is the generated token; r's totals give the N = 0 row, so the
// rows add up to the dual total exactly.
func (e *Engine) patterns(sc *dualmem.Scanner, r *dualmem.Result, members []member, ctx []rune, target int32, rg tokens) []Pattern {
	var alpha0 float64
	for _, a := range r.StepAlpha {
		alpha0 += a
	}
	rows := []Pattern{{N: 0, Suffix: "", Count: rg.to - rg.from, SameTarget: e.countTarget(target, rg),
		Contribution: r.Positive + r.Negative, Alpha: alpha0, Examples: []Entry{}}}
	for _, h := range r.TopContribution[:min(PatternExamples, len(r.TopContribution))] {
		rows[0].Examples = append(rows[0].Examples, e.entry(sc, h))
	}
	longest := 0
	for _, m := range members {
		longest = max(longest, m.n)
	}
	// Class n holds the members with m.n ≥ n: sum by exact n, then from the longest down.
	byN := make([][]member, longest+1)
	for _, m := range members {
		byN[m.n] = append(byN[m.n], m)
	}
	acc := Pattern{}
	tail := make([]Pattern, longest+1)
	for n := longest; n >= 1; n-- {
		exact := byN[n]
		for _, m := range exact {
			acc.Count++
			acc.Contribution += m.c
			acc.Alpha += m.alpha
			if sc.Mem.Targets[m.j] == target {
				acc.SameTarget++
			}
		}
		row := acc
		row.N, row.Suffix = n, string(ctx[len(ctx)-n:])
		sortMembers(exact, false)
		row.Examples = []Entry{}
		for _, m := range exact[:min(PatternExamples, len(exact))] {
			row.Examples = append(row.Examples, e.entry(sc, m.hit()))
		}
		tail[n] = row
	}
	return append(rows, tail[1:]...)
}

// countTarget counts the training tokens in rg trained to predict target.
func (e *Engine) countTarget(target int32, rg tokens) int {
	idx := e.byTarget.of(target)
	lo := sort.Search(len(idx), func(i int) bool { return int(idx[i]) >= rg.from })
	hi := sort.Search(len(idx), func(i int) bool { return int(idx[i]) >= rg.to })
	return hi - lo
}

func (m member) hit() dualmem.Hit {
	return dualmem.Hit{Index: int(m.j), Alpha: m.alpha, Contribution: m.c}
}

// sortMembers orders members by contribution (by |α| when byAttention), largest first.
func sortMembers(ms []member, byAttention bool) {
	score := func(m member) float64 {
		if byAttention {
			return math.Abs(m.alpha)
		}
		return m.c
	}
	sort.Slice(ms, func(a, b int) bool {
		if sa, sb := score(ms[a]), score(ms[b]); sa != sb {
			return sa > sb
		}
		return ms[a].j < ms[b].j
	})
}

// patternTop is the top list grouped by pattern: the training tokens that shared the most
// context with the query first, each class ordered by the ranking; when fewer than k tokens
// shared any context, the ranking's best of the rest follow.
func patternTop(sc *dualmem.Scanner, members []member, ranked []dualmem.Hit, byAttention bool, k int) []dualmem.Hit {
	ms := append([]member(nil), members...)
	sortMembers(ms, byAttention)
	sort.SliceStable(ms, func(a, b int) bool { return ms[a].n > ms[b].n })
	hits := make([]dualmem.Hit, 0, len(ms)+len(ranked))
	for _, m := range ms {
		hits = append(hits, m.hit())
	}
	return distinctWindows(sc, append(hits, ranked...), k)
}

// matches finds every training token whose context ends with the query's last character
// (the suffix array gives their corpus offsets) and measures how far back the match goes,
// within the window each of them was trained with. A frequent character has many matches:
// it checks cctx every checkEvery of them.
func (e *Engine) matches(cctx context.Context, sc *dualmem.Scanner, q dualmem.Query, ctx []rune, rg tokens) ([]member, error) {
	if len(ctx) == 0 {
		return nil, nil
	}
	last := len(ctx) - 1
	var out []member
	for i, b := range e.sa.Lookup([]byte(string(ctx[last])), -1) {
		if i%checkEvery == 0 && cctx.Err() != nil {
			return nil, cctx.Err()
		}
		off := int64(e.runeAt[b]) + 1 // the target right after the matched character
		for _, j := range sc.SameOffset(off) {
			if !rg.has(j) {
				continue
			}
			seen := int(sc.Mem.Pos[j]) + 1 // characters of context the token was trained with
			n := 1
			for n < seen && n < len(ctx) && off-int64(n)-1 >= 0 && e.corpus[off-int64(n)-1] == ctx[last-n] {
				n++
			}
			alpha, c := sc.Score(q, int(j))
			out = append(out, member{j: j, n: n, alpha: alpha, c: c})
		}
	}
	return out, nil
}

// checkEvery is how many corpus positions the evidence loops score between checks of the
// request's context.
const checkEvery = 1024

package query

import (
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

// patterns builds the nested classes for one token and layer. ctx is the query's context as
// the model saw it (its last Ctx characters), target the generated token; r's totals give
// the N = 0 row, so the rows add up to the dual total exactly.
func (e *Engine) patterns(sc *dualmem.Scanner, q dualmem.Query, r *dualmem.Result, ctx []rune, target int32, inRange func(j int32) bool) []Pattern {
	var alpha0 float64
	for _, a := range r.StepAlpha {
		alpha0 += a
	}
	count0 := 0
	for j := range sc.N {
		if inRange(int32(j)) {
			count0++
		}
	}
	rows := []Pattern{{N: 0, Suffix: "", Count: count0, Contribution: r.Positive + r.Negative, Alpha: alpha0, Examples: []Entry{}}}
	for _, h := range r.TopContribution[:min(PatternExamples, len(r.TopContribution))] {
		rows[0].Examples = append(rows[0].Examples, e.entry(sc, h))
	}
	if len(ctx) == 0 {
		return rows
	}
	members := e.matches(sc, q, ctx, inRange)
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
		sort.Slice(exact, func(a, b int) bool {
			if exact[a].c != exact[b].c {
				return exact[a].c > exact[b].c
			}
			return exact[a].j < exact[b].j
		})
		row.Examples = []Entry{}
		for _, m := range exact[:min(PatternExamples, len(exact))] {
			row.Examples = append(row.Examples, e.entry(sc, dualmem.Hit{Index: int(m.j), Alpha: m.alpha, Contribution: m.c}))
		}
		tail[n] = row
	}
	for j := range sc.N {
		if inRange(int32(j)) && sc.Mem.Targets[j] == target {
			rows[0].SameTarget++
		}
	}
	return append(rows, tail[1:]...)
}

// matches finds every training token whose context ends with the query's last character
// (the suffix array gives their corpus offsets) and measures how far back the match goes,
// within the window each of them was trained with.
func (e *Engine) matches(sc *dualmem.Scanner, q dualmem.Query, ctx []rune, inRange func(j int32) bool) []member {
	last := len(ctx) - 1
	var out []member
	for _, b := range e.sa.Lookup([]byte(string(ctx[last])), -1) {
		off := int64(e.runeAt[b]) + 1 // the target right after the matched character
		for _, j := range sc.SameOffset(off) {
			if !inRange(j) {
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
	return out
}

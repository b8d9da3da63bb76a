package query

import (
	"cmp"
	"context"
	"math"
	"slices"
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
	// Class n holds the members with m.n ≥ n: sum by exact n, then from the longest down.
	byN := byShared(members)
	longest := len(byN) - 1
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
		row.Examples = []Entry{}
		for _, m := range best(exact, PatternExamples, false) {
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

// score is what a member is ranked by: its contribution, or |α| when byAttention.
func (m member) score(byAttention bool) float64 {
	if byAttention {
		return math.Abs(m.alpha)
	}
	return m.c
}

// better orders members by score, largest first, then by memory order.
func better(a, b member, byAttention bool) int {
	return cmp.Or(cmp.Compare(b.score(byAttention), a.score(byAttention)), cmp.Compare(a.j, b.j))
}

// best returns the k best members by score, in order, without sorting them all: a class of
// one shared character can hold a fifth of the memory.
func best(ms []member, k int, byAttention bool) []member {
	if len(ms) <= 4*k {
		out := slices.Clone(ms)
		slices.SortFunc(out, func(a, b member) int { return better(a, b, byAttention) })
		return out[:min(k, len(out))]
	}
	top := make([]member, 0, k+1) // sorted, best first
	for _, m := range ms {
		if len(top) == k && better(m, top[k-1], byAttention) >= 0 {
			continue
		}
		i, _ := slices.BinarySearchFunc(top, m, func(a, b member) int { return better(a, b, byAttention) })
		top = slices.Insert(top, i, m)
		if len(top) > k {
			top = top[:k]
		}
	}
	return top
}

// byShared buckets members by the characters they shared: byShared(ms)[n] shared exactly n.
func byShared(ms []member) [][]member {
	longest := 0
	for _, m := range ms {
		longest = max(longest, m.n)
	}
	out := make([][]member, longest+1)
	for _, m := range ms {
		out[m.n] = append(out[m.n], m)
	}
	return out
}

// patternTop is the top list grouped by pattern: the training tokens that shared the most
// context with the query first, each class ordered by the ranking; when fewer than k tokens
// shared any context, the ranking's best of the rest follow. No two come from one training
// window.
func patternTop(sc *dualmem.Scanner, members []member, ranked []dualmem.Hit, byAttention bool, k int) []dualmem.Hit {
	classes := byShared(members)
	var hits []dualmem.Hit
	for n := len(classes) - 1; n >= 1; n-- {
		// Enough candidates for k distinct windows, unless the class repeats windows a lot.
		want := 4*k + 64
		for {
			cand := best(classes[n], want, byAttention)
			h := append(slices.Clone(hits), make([]dualmem.Hit, 0, len(cand))...)
			for _, m := range cand {
				h = append(h, m.hit())
			}
			if got := distinctWindows(sc, h, k); len(got) == k {
				return got
			} else if len(cand) == len(classes[n]) {
				hits = h
				break
			}
			want *= 8
		}
	}
	return distinctWindows(sc, append(hits, ranked...), k)
}

// shared lists every training token in rg whose context ends with the query's last
// character (the suffix array gives their corpus offsets) and how far back the match goes,
// within the window each was trained with. It depends on the training tokens only, not on
// a layer. A frequent character has many matches: it checks cctx every checkEvery of them.
func (e *Engine) shared(cctx context.Context, sc *dualmem.Scanner, ctx []rune, rg tokens) ([]member, error) {
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
			out = append(out, member{j: j, n: n})
		}
	}
	return out, nil
}

// scored is members with their α and contribution for query q of a layer.
func scored(sc *dualmem.Scanner, q dualmem.Query, members []member) []member {
	idx := make([]int32, len(members))
	for i, m := range members {
		idx[i] = m.j
	}
	alpha, c := make([]float64, len(members)), make([]float64, len(members))
	sc.Scores(q, idx, alpha, c)
	out := make([]member, len(members))
	for i, m := range members {
		out[i] = member{j: m.j, n: m.n, alpha: alpha[i], c: c[i]}
	}
	return out
}

// checkEvery is how many corpus positions the evidence loops score between checks of the
// request's context.
const checkEvery = 1024

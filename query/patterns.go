package query

import (
	"context"
	"slices"
	"sort"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/internal/filemem"
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

// tokens is a range [from, to) of memory token indices: the training steps an answer covers.
type tokens struct{ from, to int }

func (r tokens) has(j int32) bool { return int(j) >= r.from && int(j) < r.to }

// shared is what one query's context shares with the training tokens, the same for every
// layer: the members (the training tokens in range whose context ends with the query's last
// character) in memory order, and how many characters each shared. Members are classed by
// that count n, class n−1 for the scan; most share one character only, so only the others
// are listed with their class, and the list of members is a view of the engine's index:
// a member costs a request nothing unless it shared two characters or more.
type shared struct {
	js    []int32           // member tokens, ascending (a view of the engine's index)
	deep  []dualmem.ClassOf // the members that shared n ≥ 2 characters, ascending, in class n−1
	count []int             // per n ≥ 1: the members that shared exactly n characters
	same  []int             // per n ≥ 1: those of them trained to predict the query's target
}

// longest is the most characters a member shared (0 without members).
func (s *shared) longest() int { return len(s.count) - 1 }

// members is the scan's view of the members: class n−1 holds those that shared n.
func (s *shared) members() dualmem.Members {
	return dualmem.Members{Tokens: s.js, Classes: s.deep, N: max(1, s.longest())}
}

// class lists the members that shared exactly n characters, ascending.
func (s *shared) class(n int) []int32 {
	out := make([]int32, 0, s.count[n])
	if n >= 2 {
		for _, c := range s.deep {
			if int(c.Class) == n-1 {
				out = append(out, c.Token)
			}
		}
		return out
	}
	k := 0
	for _, j := range s.js {
		if k < len(s.deep) && s.deep[k].Token == j {
			k++
			continue
		}
		out = append(out, j)
	}
	return out
}

// patterns builds the nested classes for one token and layer from the scan's figures for
// the members of the query's context (cls, class n−1 for n characters shared); target is
// the generated token; r's totals give the N = 0 row, so the rows add up to the dual total
// exactly.
func (e *Engine) patterns(sc *dualmem.Scanner, r *dualmem.Result, sh *shared, cls []dualmem.Class, ctx []rune, target int32, rg tokens) []Pattern {
	var alpha0 float64
	for _, a := range r.StepAlpha {
		alpha0 += a
	}
	rows := []Pattern{{N: 0, Suffix: "", Count: rg.to - rg.from, SameTarget: e.countTarget(target, rg),
		Contribution: r.Positive + r.Negative, Alpha: alpha0, Examples: []Entry{}}}
	for _, h := range r.TopContribution[:min(PatternExamples, len(r.TopContribution))] {
		rows[0].Examples = append(rows[0].Examples, e.entry(sc, h))
	}
	// Class n holds the members that shared n or more: add the exact classes up from the
	// longest down.
	longest := sh.longest()
	acc := Pattern{}
	tail := make([]Pattern, longest+1)
	for n := longest; n >= 1; n-- {
		c := &cls[n-1]
		acc.Count += sh.count[n]
		acc.SameTarget += sh.same[n]
		acc.Contribution += c.Contribution
		acc.Alpha += c.Alpha
		row := acc
		row.N, row.Suffix = n, string(ctx[len(ctx)-n:])
		row.Examples = []Entry{}
		for _, h := range c.TopContribution[:min(PatternExamples, len(c.TopContribution))] {
			row.Examples = append(row.Examples, e.entry(sc, h))
		}
		tail[n] = row
	}
	return append(rows, tail[1:]...)
}

// countTarget counts the training tokens in rg trained to predict target.
func (e *Engine) countTarget(target int32, rg tokens) int {
	return len(inRange(e.byTarget.of(target), rg))
}

// inRange is the part of an ascending list of memory tokens inside rg.
func inRange(idx []int32, rg tokens) []int32 {
	lo := sort.Search(len(idx), func(i int) bool { return int(idx[i]) >= rg.from })
	hi := sort.Search(len(idx), func(i int) bool { return int(idx[i]) >= rg.to })
	return idx[lo:max(lo, hi)]
}

// memberTop is how many hits a full scan keeps per ranking, and per member class, for an
// answer's top k: spares for the hits that share a window with better ones.
func memberTop(req Request) int { return 4*req.TopK + 64 }

// patternTop is the top list grouped by pattern: the training tokens that shared the most
// context with the query first, each class ordered by the ranking; when fewer than k tokens
// shared any context, the ranking's best of the rest follow. No two come from one training
// window. cls are the member classes' figures (best memberTop tokens each); a class whose
// best hold too few distinct windows is scored again, keeping 8× as many, from its members'
// keys. It returns the list and how many tokens it scored again.
func patternTop(ctx context.Context, sc *dualmem.Scanner, q dualmem.Query, sh *shared, cls []dualmem.Class, ranked []dualmem.Hit, byAttention bool, k int) ([]dualmem.Hit, int, error) {
	var hits []dualmem.Hit
	rescored := 0
	for n := sh.longest(); n >= 1; n-- {
		cand := cls[n-1].TopContribution
		if byAttention {
			cand = cls[n-1].TopAttention
		}
		var class []int32 // the class's members, listed when first scored again
		for {
			h := append(slices.Clone(hits), cand...)
			if got := distinctWindows(sc, h, k); len(got) == k {
				return got, rescored, nil
			} else if len(cand) == sh.count[n] {
				hits = h
				break
			}
			if class == nil {
				class = sh.class(n)
			}
			more, err := sc.ScoreMembers(ctx, q, dualmem.Members{Tokens: class, N: 1}, 8*len(cand))
			if err != nil {
				return nil, 0, err
			}
			rescored += len(class)
			cand = more[0].TopContribution
			if byAttention {
				cand = more[0].TopAttention
			}
		}
	}
	return distinctWindows(sc, append(hits, ranked...), k), rescored, nil
}

// prevIndex lists, per character, the memory tokens whose target follows that character in
// the corpus, in memory order: the members of any context ending with it. Built once per
// engine, it replaces a suffix-array lookup per query.
type prevIndex struct {
	class map[rune]int32
	toks  targetIndex // per class, its members in memory order
}

func (e *Engine) newPrevIndex(sc *dualmem.Scanner, arena *filemem.Arena) prevIndex {
	// Per corpus offset, the class of the character before it: the corpus's size, not the
	// memory's, and dropped once the index is built.
	x := prevIndex{class: map[rune]int32{}}
	before := make([]int32, len(e.corpus)+1)
	before[0] = -1
	for i, r := range e.corpus {
		c, ok := x.class[r]
		if !ok {
			c = int32(len(x.class))
			x.class[r] = c
		}
		before[i+1] = c
	}
	offs := sc.Mem.Offsets
	x.toks = newTargetIndex(len(offs), len(x.class), func(j int) int32 {
		if off := offs[j]; off >= 1 && off <= int64(len(e.corpus)) {
			return before[off]
		}
		return -1
	}, arena)
	return x
}

// of lists the memory tokens trained right after character r, in memory order.
func (x prevIndex) of(r rune) []int32 {
	c, ok := x.class[r]
	if !ok {
		return nil
	}
	return x.toks.of(c)
}

// shared finds the training tokens in rg whose context ends with the query's last character
// and how far back each match goes, within the window each was trained with, and counts
// those trained to predict target. It depends on the training tokens only, not on a layer.
// A frequent character has many members: it checks cctx every checkEvery of them.
func (e *Engine) shared(cctx context.Context, sc *dualmem.Scanner, ctx []rune, target int32, rg tokens) (*shared, error) {
	sh := &shared{count: []int{0}, same: []int{0}}
	if len(ctx) == 0 {
		return sh, nil
	}
	last := len(ctx) - 1
	sh.js = inRange(e.byPrev.of(ctx[last]), rg)
	for i, j := range sh.js {
		if i%checkEvery == 0 && cctx.Err() != nil {
			return nil, cctx.Err()
		}
		off := sc.Mem.Offsets[j]
		seen := int(sc.Mem.Pos[j]) + 1 // characters of context the token was trained with
		n := 1
		for n < seen && n < len(ctx) && off-int64(n)-1 >= 0 && e.corpus[off-int64(n)-1] == ctx[last-n] {
			n++
		}
		for len(sh.count) <= n {
			sh.count, sh.same = append(sh.count, 0), append(sh.same, 0)
		}
		sh.count[n]++
		if sc.Mem.Targets[j] == target {
			sh.same[n]++
		}
		if n >= 2 {
			sh.deep = append(sh.deep, dualmem.ClassOf{Token: j, Class: int32(n - 1)})
		}
	}
	return sh, nil
}

// checkEvery is how many training tokens the evidence loops visit between checks of the
// request's context.
const checkEvery = 1024

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

// tokens is a range [from, to) of memory token indices: the training steps an answer covers.
type tokens struct{ from, to int }

func (r tokens) has(j int32) bool { return int(j) >= r.from && int(j) < r.to }

// shared is what one query's context shares with the training tokens, the same for every
// layer: the members (the training tokens in range whose context ends with the query's last
// character) in memory order, how many characters each shared, and the members grouped by
// that count.
type shared struct {
	js    []int32 // member tokens, ascending (a view of the engine's index)
	ns    []int32 // characters each member shared, at least 1
	order []int32 // member positions by shared count: class n is order[first[n]:first[n+1]]
	first []int32
	same  []int // per count n: the members trained to predict the query's target
}

// class lists the positions (into js) of the members that shared exactly n characters, in
// the suffix array's order.
func (s *shared) class(n int) []int32 { return s.order[s.first[n]:s.first[n+1]] }

// longest is the most characters a member shared (0 without members).
func (s *shared) longest() int { return len(s.first) - 2 }

// scores are the members' α and contribution for one layer's query, by member position.
type scores struct {
	js       []int32
	alpha, c []float64
}

func (s scores) hit(p int32) dualmem.Hit {
	return dualmem.Hit{Index: int(s.js[p]), Alpha: s.alpha[p], Contribution: s.c[p]}
}

// score is what a member is ranked by: its contribution, or |α| when byAttention.
func (s scores) score(p int32, byAttention bool) float64 {
	if byAttention {
		return math.Abs(s.alpha[p])
	}
	return s.c[p]
}

// better orders members by score, largest first, then by memory order.
func (s scores) better(a, b int32, byAttention bool) int {
	return cmp.Or(cmp.Compare(s.score(b, byAttention), s.score(a, byAttention)), cmp.Compare(s.js[a], s.js[b]))
}

// patterns builds the nested classes for one token and layer from the members of the
// query's context; target is the generated token; r's totals give the N = 0 row, so the rows
// add up to the dual total exactly.
func (e *Engine) patterns(sc *dualmem.Scanner, r *dualmem.Result, sh *shared, s scores, ctx []rune, target int32, rg tokens) []Pattern {
	var alpha0 float64
	for _, a := range r.StepAlpha {
		alpha0 += a
	}
	rows := []Pattern{{N: 0, Suffix: "", Count: rg.to - rg.from, SameTarget: e.countTarget(target, rg),
		Contribution: r.Positive + r.Negative, Alpha: alpha0, Examples: []Entry{}}}
	for _, h := range r.TopContribution[:min(PatternExamples, len(r.TopContribution))] {
		rows[0].Examples = append(rows[0].Examples, e.entry(sc, h))
	}
	// Class n holds the members that shared n or more: sum by exact n, from the longest down.
	longest := sh.longest()
	acc := Pattern{}
	tail := make([]Pattern, longest+1)
	for n := longest; n >= 1; n-- {
		exact := sh.class(n)
		acc.Count += len(exact)
		acc.SameTarget += sh.same[n]
		for _, p := range exact {
			acc.Contribution += s.c[p]
			acc.Alpha += s.alpha[p]
		}
		row := acc
		row.N, row.Suffix = n, string(ctx[len(ctx)-n:])
		row.Examples = []Entry{}
		for _, p := range best(s, exact, PatternExamples, false) {
			row.Examples = append(row.Examples, e.entry(sc, s.hit(p)))
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

// best returns the k best of the members at positions ps, in order, without sorting them
// all: a class of one shared character can hold a fifth of the memory.
func best(s scores, ps []int32, k int, byAttention bool) []int32 {
	order := func(a, b int32) int { return s.better(a, b, byAttention) }
	if len(ps) <= 4*k {
		out := slices.Clone(ps)
		slices.SortFunc(out, order)
		return out[:min(k, len(out))]
	}
	top := make([]int32, 0, k+1) // sorted, best first
	worst := math.Inf(-1)        // the k-th best score once top is full
	for _, p := range ps {
		// Most members score below the k-th best: one comparison rejects them.
		if len(top) == k && (s.score(p, byAttention) < worst || order(p, top[k-1]) >= 0) {
			continue
		}
		i, _ := slices.BinarySearchFunc(top, p, order)
		top = slices.Insert(top, i, p)
		if len(top) > k {
			top = top[:k]
		}
		if len(top) == k {
			worst = s.score(top[k-1], byAttention)
		}
	}
	return top
}

// patternTop is the top list grouped by pattern: the training tokens that shared the most
// context with the query first, each class ordered by the ranking; when fewer than k tokens
// shared any context, the ranking's best of the rest follow. No two come from one training
// window.
func patternTop(sc *dualmem.Scanner, sh *shared, s scores, ranked []dualmem.Hit, byAttention bool, k int) []dualmem.Hit {
	var hits []dualmem.Hit
	for n := sh.longest(); n >= 1; n-- {
		class := sh.class(n)
		// Enough candidates for k distinct windows, unless the class repeats windows a lot.
		want := 4*k + 64
		for {
			cand := best(s, class, want, byAttention)
			h := append(slices.Clone(hits), make([]dualmem.Hit, 0, len(cand))...)
			for _, p := range cand {
				h = append(h, s.hit(p))
			}
			if got := distinctWindows(sc, h, k); len(got) == k {
				return got
			} else if len(cand) == len(class) {
				hits = h
				break
			}
			want *= 8
		}
	}
	return distinctWindows(sc, append(hits, ranked...), k)
}

// prevIndex lists, per character, the memory tokens whose target follows that character in
// the corpus: the members of any context ending with it. Built once per engine, it replaces
// a suffix-array lookup per query. The members are kept in memory order, for the scan, and
// in the suffix array's order (by the corpus text from that character on, then memory
// order), in which the pattern sums add them up.
type prevIndex struct {
	class map[rune]int32
	toks  targetIndex // per class, its members in memory order
	// saPos[toks.first[c]:toks.first[c+1]] are the positions of class c's members in its
	// memory-order list, in suffix-array order.
	saPos []int32
}

func (e *Engine) newPrevIndex(sc *dualmem.Scanner) prevIndex {
	x := prevIndex{class: map[rune]int32{}}
	keys := make([]int32, len(sc.Mem.Offsets))
	for j, off := range sc.Mem.Offsets {
		keys[j] = -1
		if off < 1 || off > int64(len(e.corpus)) {
			continue
		}
		c, ok := x.class[e.corpus[off-1]]
		if !ok {
			c = int32(len(x.class))
			x.class[e.corpus[off-1]] = c
		}
		keys[j] = c
	}
	x.toks = newTargetIndex(keys, len(x.class))
	x.saPos = make([]int32, len(x.toks.tokens))
	for r, c := range x.class {
		list := x.toks.of(c)
		out := x.saPos[x.toks.first[c]:x.toks.first[c]]
		placed := make([]bool, len(list))
		for _, b := range e.sa.Lookup([]byte(string(r)), -1) {
			for _, j := range sc.SameOffset(int64(e.runeAt[b]) + 1) {
				if p, ok := slices.BinarySearch(list, j); ok && !placed[p] {
					placed[p] = true
					out = append(out, int32(p))
				}
			}
		}
		// Members the suffix array does not reach (a character that is not valid UTF-8
		// in the corpus) follow in memory order.
		for p, done := range placed {
			if !done {
				out = append(out, int32(p))
			}
		}
	}
	return x
}

// of lists the memory tokens trained right after character r, in memory order, and their
// positions in that list in suffix-array order.
func (x prevIndex) of(r rune) (toks, saPos []int32) {
	c, ok := x.class[r]
	if !ok {
		return nil, nil
	}
	return x.toks.of(c), x.saPos[x.toks.first[c]:x.toks.first[c+1]]
}

// shared finds the training tokens in rg whose context ends with the query's last character
// and how far back each match goes, within the window each was trained with, and counts
// those trained to predict target. It depends on the training tokens only, not on a layer.
// A frequent character has many members: it checks cctx every checkEvery of them.
func (e *Engine) shared(cctx context.Context, sc *dualmem.Scanner, ctx []rune, target int32, rg tokens) (*shared, error) {
	sh := &shared{first: []int32{0, 0}, same: []int{0}}
	if len(ctx) == 0 {
		return sh, nil
	}
	last := len(ctx) - 1
	all, saPos := e.byPrev.of(ctx[last])
	lo := sort.Search(len(all), func(i int) bool { return int(all[i]) >= rg.from })
	hi := max(lo, sort.Search(len(all), func(i int) bool { return int(all[i]) >= rg.to }))
	sh.js = all[lo:hi]
	sh.ns = make([]int32, len(sh.js))
	longest := 0
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
		sh.ns[i] = int32(n)
		longest = max(longest, n)
	}
	// A counting sort by n; each class keeps the suffix array's order.
	sh.first, sh.same = make([]int32, longest+2), make([]int, longest+1)
	for p, n := range sh.ns {
		sh.first[n+1]++
		if sc.Mem.Targets[sh.js[p]] == target {
			sh.same[n]++
		}
	}
	for n := 1; n < len(sh.first); n++ {
		sh.first[n] += sh.first[n-1]
	}
	next := slices.Clone(sh.first)
	sh.order = make([]int32, len(sh.js))
	for _, p := range saPos {
		if p -= int32(lo); p >= 0 && int(p) < len(sh.js) {
			n := sh.ns[p]
			sh.order[next[n]] = p
			next[n]++
		}
	}
	return sh, nil
}

// checkEvery is how many training tokens the evidence loops visit between checks of the
// request's context.
const checkEvery = 1024

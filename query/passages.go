package query

import (
	"context"
	"math"
	"slices"
	"sort"
	"unicode"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/internal/filemem"
)

// A passage is one sentence of the training text: it ends after a run of '.', '!' or '?'
// followed by white space, or at a blank line, and is at most MaxPassageChars characters
// (a longer sentence is cut at its last space before the limit). Sentences are what a reader
// recognises as "where this came from", and every training token belongs to exactly one.
const MaxPassageChars = 240

// Passage is one training passage with everything its tokens contributed, over every
// position and epoch they were trained at.
type Passage struct {
	Start        int64     `json:"start"` // corpus offset (in characters) of its first character
	End          int64     `json:"end"`   // one past its last character
	Text         string    `json:"text"`
	Count        int       `json:"count"`        // training tokens whose target lies in it (all epochs)
	Contribution float64   `json:"contribution"` // Σ contribution of those tokens
	Alpha        float64   `json:"alpha"`        // Σ α of those tokens
	Tokens       []float64 `json:"tokens"`       // per character of Text: Σ contribution of the tokens trained to predict it
}

// passageIdx is the corpus split into passages.
type passageIdx struct {
	starts []int64 // first offset of each passage, then len(corpus)
	of     []int32 // passage of each offset
}

// passages splits a corpus into passages; it returns the start offset of each passage (plus
// len(corpus) at the end) and the passage of every offset.
func passages(corpus []rune) (starts []int64, of []int32) {
	of = make([]int32, len(corpus))
	start, lastSpace := 0, -1
	cut := func(end int) {
		for i := start; i < end; i++ {
			of[i] = int32(len(starts))
		}
		starts = append(starts, int64(start))
		start, lastSpace = end, -1
	}
	for i := 0; i < len(corpus); i++ {
		r := corpus[i]
		if unicode.IsSpace(r) {
			lastSpace = i
		}
		switch {
		case (r == '.' || r == '!' || r == '?') && i+1 < len(corpus) && unicode.IsSpace(corpus[i+1]):
			cut(i + 2) // the sentence keeps the space after it
			i++
		case r == '\n' && i+1 < len(corpus) && corpus[i+1] == '\n':
			cut(i + 2)
			i++
		case i+1-start >= MaxPassageChars:
			end := i + 1
			if lastSpace > start {
				end = lastSpace + 1
			}
			cut(end)
			i = end - 1
		}
	}
	if start < len(corpus) {
		cut(len(corpus))
	}
	return append(starts, int64(len(corpus))), of
}

// passageGroups maps every memory token of a layer to the passage of its target.
func passageGroups(m *dualmem.LayerMemory, of []int32, arena *filemem.Arena) []int32 {
	g := arena.Int32s(len(m.Offsets))
	for j, off := range m.Offsets {
		g[j] = -1
		if off >= 0 && off < int64(len(of)) {
			g[j] = of[off]
		}
	}
	return g
}

// topPassages picks the passages with the largest contribution (most positive first) from
// a scan's per-passage sums and fills in their text and per-character contributions.
func (e *Engine) topPassages(ctx context.Context, sc *dualmem.Scanner, q dualmem.Query, r *dualmem.Result, n int, rg tokens) ([]Passage, error) {
	ps := e.pass
	// The n largest nonzero sums, ties by passage order, without sorting every passage.
	gc := r.GroupContribution
	before := func(a, b int) bool { return gc[a] > gc[b] || (gc[a] == gc[b] && a < b) }
	idx := make([]int, 0, max(n, 0)+1)
	for g, c := range gc {
		if n < 1 || c == 0 || (len(idx) == n && !before(g, idx[n-1])) {
			continue
		}
		i := sort.Search(len(idx), func(i int) bool { return before(g, idx[i]) })
		idx = slices.Insert(idx, i, g)
		if len(idx) > n {
			idx = idx[:n]
		}
	}
	out := []Passage{}
	for _, g := range idx {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		lo, hi := ps.starts[g], ps.starts[g+1]
		p := Passage{Start: lo, End: hi, Text: string(e.corpus[lo:hi]), Contribution: r.GroupContribution[g],
			Alpha: r.GroupAlpha[g], Tokens: make([]float64, hi-lo)}
		for off := lo; off < hi; off++ {
			for _, j := range sc.SameOffset(off) {
				if !rg.has(j) {
					continue
				}
				_, c := sc.Score(q, int(j))
				p.Tokens[off-lo] += c
				p.Count++
			}
		}
		for i, c := range p.Tokens {
			p.Tokens[i] = roundSig(c)
		}
		out = append(out, p)
	}
	return out, nil
}

// roundSig keeps 4 significant digits: per-character values are for colouring and reading,
// and full float64 digits would triple the answer's size.
func roundSig(x float64) float64 {
	if x == 0 || math.IsInf(x, 0) || math.IsNaN(x) {
		return x
	}
	scale := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(x))))
	return math.Round(x*scale) / scale
}

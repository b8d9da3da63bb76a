package dualmem

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
)

// Members is one query's list of memory tokens sorted into classes (the training tokens that
// shared some context with it, by how much). A scan sums each class's α and contributions
// and keeps its best tokens as it scores them, so the caller holds no score per token: on a
// large memory such a list runs to millions of tokens per query.
type Members struct {
	Tokens []int32 // ascending
	// Classes lists the tokens of Tokens in a class other than 0, ascending by token; every
	// other token is in class 0, so a list whose tokens are mostly in one class costs
	// nothing for them.
	Classes []ClassOf
	N       int // classes, at least 1 (class indices are in [0, N))
}

// ClassOf puts one token of Members.Tokens in a class.
type ClassOf struct{ Token, Class int32 }

// Class is what a scan found for one class of a query's Members.
type Class struct {
	Count               int
	Alpha, Contribution float64 // Σ α and Σ contribution over the class
	// The class's best tokens by |α| and by contribution, best first (ties by index): as
	// many as the scan's TopK.
	TopAttention, TopContribution []Hit
}

// check reports the first way m is not a valid member list inside [from, to).
func (m *Members) check(from, to int) error {
	if m.N < 1 {
		return fmt.Errorf("%d classes, want at least 1", m.N)
	}
	for k, j := range m.Tokens {
		if int(j) < from || int(j) >= to || (k > 0 && j <= m.Tokens[k-1]) {
			return fmt.Errorf("tokens are not ascending inside [%d, %d) at token %d", from, to, j)
		}
	}
	k := 0
	for i, c := range m.Classes {
		if c.Class < 0 || int(c.Class) >= m.N {
			return fmt.Errorf("token %d in class %d, outside [0, %d)", c.Token, c.Class, m.N)
		}
		if i > 0 && c.Token <= m.Classes[i-1].Token {
			return fmt.Errorf("classes are not ascending by token at token %d", c.Token)
		}
		for k < len(m.Tokens) && m.Tokens[k] < c.Token {
			k++
		}
		if k == len(m.Tokens) || m.Tokens[k] != c.Token {
			return fmt.Errorf("token %d has a class but is not a member", c.Token)
		}
	}
	return nil
}

// checkMembers checks that opt.Members has one valid list per query inside [From, To).
func (s *Scanner) checkMembers(qs []Query, opt ScanOptions) error {
	if opt.Members == nil {
		return nil
	}
	if len(opt.Members) != len(qs) {
		return fmt.Errorf("dualmem: scan %q: %d member lists for %d queries", s.Mem.Spec.Name, len(opt.Members), len(qs))
	}
	for qi := range opt.Members {
		if err := opt.Members[qi].check(opt.From, opt.To); err != nil {
			return fmt.Errorf("dualmem: scan %q: member list %d: %w", s.Mem.Spec.Name, qi, err)
		}
	}
	return nil
}

// classHeaps are one worker's best tokens of each class of one query.
type classHeaps []struct{ att, con hitHeap }

func newClassHeaps(n, k int) classHeaps {
	hs := make(classHeaps, n)
	for i := range hs {
		hs[i].att = hitHeap{abs: true, k: k, min: math.Inf(-1)}
		hs[i].con = hitHeap{k: k, min: math.Inf(-1)}
	}
	return hs
}

// offer offers the members toks (ascending) in classes cl with their α and contributions.
// One worker's tokens come in ascending order, so a token scoring the same as a full heap's
// worst is the worse of the two (ties go to the lower index) and is skipped by one compare.
func (hs classHeaps) offer(toks []int32, cl []int32, alpha, contribution []float64) {
	for k, j := range toks {
		h := &hs[cl[k]]
		a, c := alpha[k], contribution[k]
		if math.Abs(a) > h.att.min {
			h.att.offer(Hit{Index: int(j), Alpha: a, Contribution: c}, h.att.k)
		}
		if c > h.con.min {
			h.con.offer(Hit{Index: int(j), Alpha: a, Contribution: c}, h.con.k)
		}
	}
}

// classify sets cl[k] to the class of toks[k] (ascending, a run of m.Tokens).
func (m *Members) classify(toks []int32, cl []int32) {
	if len(toks) == 0 {
		return
	}
	ci, _ := slices.BinarySearchFunc(m.Classes, toks[0], func(c ClassOf, t int32) int { return cmp.Compare(c.Token, t) })
	for k, j := range toks {
		cl[k] = 0
		if ci < len(m.Classes) && m.Classes[ci].Token == j {
			cl[k] = m.Classes[ci].Class
			ci++
		}
	}
}

// memberBlock is the classes and scores of one block's members for every query, in memory
// order (the tokens are the members' own list).
type memberBlock struct {
	ends []int // per query, the end of its members in the lists below
	cl   []int32
	a, c []float64
}

// reset empties b for the members of Q queries, keeping its arrays.
func (b *memberBlock) reset(Q int) {
	b.ends, b.cl, b.a, b.c = b.ends[:0], b.cl[:0], b.a[:0], b.c[:0]
	for range Q {
		b.ends = append(b.ends, 0)
	}
}

// grow appends room for n members of query qi (the queries come in order) and returns it.
func (b *memberBlock) grow(qi, n int) (cl []int32, a, c []float64) {
	lo := len(b.cl)
	b.cl, b.a, b.c = slices.Grow(b.cl, n)[:lo+n], slices.Grow(b.a, n)[:lo+n], slices.Grow(b.c, n)[:lo+n]
	for q := qi; q < len(b.ends); q++ {
		b.ends[q] = lo + n
	}
	return b.cl[lo:], b.a[lo:], b.c[lo:]
}

type classTotal struct {
	n    int
	a, c float64
}

// memberTotals adds up each class's members in memory order whichever worker scored them,
// so a class's sums are the same bits from run to run and for any number of workers: a
// worker hands in each block it scanned, and the blocks are added in order as they become
// complete. Only the blocks that finished ahead of an earlier one wait.
type memberTotals struct {
	mu      sync.Mutex
	next    int // the first block not added yet
	pending map[int]*memberBlock
	free    []*memberBlock
	sums    [][]classTotal // [query][class]
}

func newMemberTotals(lists []Members) *memberTotals {
	t := &memberTotals{pending: map[int]*memberBlock{}, sums: make([][]classTotal, len(lists))}
	for qi := range lists {
		t.sums[qi] = make([]classTotal, lists[qi].N)
	}
	return t
}

// block returns an empty block for Q queries.
func (t *memberTotals) block(Q int) *memberBlock {
	t.mu.Lock()
	var b *memberBlock
	if n := len(t.free); n > 0 {
		b, t.free = t.free[n-1], t.free[:n-1]
	} else {
		b = &memberBlock{}
	}
	t.mu.Unlock()
	b.reset(Q)
	return b
}

// done hands in block bi's members and adds every block that is now next in order.
func (t *memberTotals) done(bi int, b *memberBlock) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending[bi] = b
	for {
		b, ok := t.pending[t.next]
		if !ok {
			return
		}
		delete(t.pending, t.next)
		t.add(b)
		t.free = append(t.free, b)
		t.next++
	}
}

func (t *memberTotals) add(b *memberBlock) {
	lo := 0
	for qi, hi := range b.ends {
		s := t.sums[qi]
		for k := lo; k < hi; k++ {
			x := &s[b.cl[k]]
			x.n++
			x.a += b.a[k]
			x.c += b.c[k]
		}
		lo = hi
	}
}

// classes is query qi's figures: its sums, and the best k of the workers' heaps.
func (t *memberTotals) classes(qi int, heaps []classHeaps, k int) []Class {
	out := make([]Class, len(t.sums[qi]))
	for cl, s := range t.sums[qi] {
		out[cl] = Class{Count: s.n, Alpha: s.a, Contribution: s.c}
		att, con := &hitHeap{abs: true}, &hitHeap{}
		for _, hs := range heaps {
			for _, h := range hs[cl].att.h {
				att.offer(h, k)
			}
			for _, h := range hs[cl].con.h {
				con.offer(h, k)
			}
		}
		out[cl].TopAttention, out[cl].TopContribution = att.sorted(), con.sorted()
	}
	return out
}

// memberChunk is how many members ScoreMembers scores at a time.
const memberChunk = 4096

// ScoreMembers is the member part of a scan (ScanOptions.Members) for one query, from
// Scores: per class the sums and the best k tokens, each scored as Scores does, reading the
// members' keys only. Its figures are those a scan gives the same members, bit for bit. A
// frequent character's members run to millions: it checks ctx between chunks.
func (s *Scanner) ScoreMembers(ctx context.Context, q Query, m Members, k int) ([]Class, error) {
	if k < 1 {
		return nil, fmt.Errorf("dualmem: score members %q: top-k %d, want at least 1", s.Mem.Spec.Name, k)
	}
	if err := s.checkQuery("score members", 0, q); err != nil {
		return nil, err
	}
	if err := m.check(0, s.N); err != nil {
		return nil, fmt.Errorf("dualmem: score members %q: %w", s.Mem.Spec.Name, err)
	}
	t, hs, b := newMemberTotals([]Members{m}), newClassHeaps(m.N, k), &memberBlock{}
	for lo := 0; lo < len(m.Tokens); lo += memberChunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b.reset(1)
		toks := m.Tokens[lo:min(lo+memberChunk, len(m.Tokens))]
		cl, a, c := b.grow(0, len(toks))
		m.classify(toks, cl)
		s.Scores(q, toks, a, c)
		hs.offer(toks, cl, a, c)
		t.add(b)
	}
	return t.classes(0, []classHeaps{hs}, k), nil
}

// foldMembers scores the members of block [j0, j0+nb) for every query, offers them to the
// worker's heaps and returns them for the totals: from the block's α and projections when
// the kernels compute them as Scores does (fromBlock), else with Scores while the keys are
// in cache.
func (s *Scanner) foldMembers(b *memberBlock, heaps []classHeaps, qs []Query, lists []Members, j0, nb int, alpha, proj []float32, row []int, fromBlock bool) {
	for qi := range lists {
		m := &lists[qi]
		lo, _ := slices.BinarySearch(m.Tokens, int32(j0))
		hi, _ := slices.BinarySearch(m.Tokens[lo:], int32(j0+nb))
		if hi == 0 {
			continue
		}
		toks := m.Tokens[lo : lo+hi]
		cl, a, c := b.grow(qi, hi)
		m.classify(toks, cl)
		if fromBlock {
			al, gu := alpha[qi*nb:(qi+1)*nb], proj[row[qi]*nb:(row[qi]+1)*nb]
			for k, j := range toks {
				i := int(j) - j0
				av := float64(al[i])
				a[k], c[k] = av, av*s.SW[s.StepIndex(int(j))]*float64(gu[i])
			}
		} else {
			s.Scores(qs[qi], toks, a, c)
		}
		heaps[qi].offer(toks, cl, a, c)
	}
}

package dualmem

import (
	"log/slog"
	"math"
	"sync"
)

// searchIndex is a Scanner's block layout and bounds, built on first use.
type searchIndex struct {
	*blockLayout
	bb  *blockBounds
	top boxes // the whole-step box of every step
}

// blockLayout is Search's grouping of a memory's tokens into blocks, step by step and by
// target within a step. It depends only on the steps' targets, so the layers of one Memory
// call share one (4 bytes a token, not 4 a token and layer).
type blockLayout struct {
	once   sync.Once
	perm   []int32 // token indices, block by block, step by step
	bstart []int32 // per block: its first position in perm; then len(perm)
	sblk   []int32 // per step: its first block; then the block count
	bstep  []int32 // per block: its step
	tstart []int   // per step: its first token; then N
}

func (s *Scanner) index() *searchIndex {
	s.searchOnce.Do(func() { s.sidx = s.buildIndex() })
	return s.sidx
}

// blocks is m's block layout: the one its Memory call shares, or its own.
func (m *LayerMemory) blocks() *blockLayout {
	lay := m.layout
	if lay == nil {
		lay = &blockLayout{}
	}
	lay.once.Do(func() { lay.build(m) })
	return lay
}

func (lay *blockLayout) build(m *LayerMemory) {
	T := len(m.Steps)
	lay.perm, lay.sblk, lay.tstart, lay.bstart = m.arena.Int32s(m.Tokens()), make([]int32, 1, T+1), make([]int, T+1), []int32{0}
	var perm, ends []int32
	for t, si := range m.Steps {
		a := lay.tstart[t]
		lay.tstart[t+1] = a + si.Tokens()
		perm, ends = stepBlocks(m.Targets[a:lay.tstart[t+1]], perm, ends)
		base := int32(a) // a step's blocks hold its tokens, so they start where it does
		for i, j := range perm {
			lay.perm[a+i] = int32(a) + j
		}
		for _, e := range ends {
			lay.bstart = append(lay.bstart, base+e)
		}
		lay.sblk = append(lay.sblk, int32(len(lay.bstart)-1))
		for range ends {
			lay.bstep = append(lay.bstep, int32(t))
		}
	}
}

func (s *Scanner) buildIndex() *searchIndex {
	m := s.Mem
	T := len(m.Steps)
	ix := &searchIndex{blockLayout: m.blocks()}
	ix.bb = m.bounds
	if bb := ix.bb; bb != nil {
		ok := len(bb.nblk) >= T && bb.din == s.DIn && bb.dout == s.DOut
		for t := 0; ok && t < T; t++ {
			ok = int(bb.nblk[t]) == int(ix.sblk[t+1]-ix.sblk[t])
		}
		if !ok {
			slog.Warn("block bounds do not match the memory; computing them in memory", "layer", m.Spec.Name)
			ix.bb = nil
		}
	}
	if ix.bb == nil {
		ix.bb = computeBounds(m)
	}
	w := boxWords(T, s.DIn, s.DOut)
	ix.top = viewBoxes(make([]float32, w), T, s.DIn, s.DOut)
	for t := range T {
		b := ix.bb.step(t)
		copy(ix.top.c[t*s.DIn:], b.c[:s.DIn])
		copy(ix.top.r[t*s.DIn:], b.r[:s.DIn])
		copy(ix.top.gc[t*s.DOut:], b.gc[:s.DOut])
		copy(ix.top.gr[t*s.DOut:], b.gr[:s.DOut])
		ix.top.nk[t], ix.top.ng[t], ix.top.rk[t], ix.top.rg[t] = b.nk[0], b.ng[0], b.rk[0], b.rg[0]
	}
	ix.top.transpose()
	return ix
}

// searchQueries is a batch prepared for the kernels: xs and |xs| query-major, the
// projections of hidden-layer queries (us, |us|, row hq[q]) and the norms.
type searchQueries struct {
	qs      []Query
	xs, axs []float32
	us, aus []float32
	hq      []int
	nh      int
	xn, un  []float64
}

func (s *Scanner) prepare(qs []Query) (*searchQueries, error) {
	sq := &searchQueries{qs: qs, xs: make([]float32, len(qs)*s.DIn), hq: make([]int, len(qs)),
		xn: make([]float64, len(qs)), un: make([]float64, len(qs))}
	for i, q := range qs {
		if err := s.checkQuery("search", i, q); err != nil {
			return nil, err
		}
		copy(sq.xs[i*s.DIn:], q.X)
		sq.xn[i] = norm2(q.X)
		sq.hq[i] = -1
		if q.Token < 0 {
			sq.hq[i] = sq.nh
			sq.nh++
			sq.us = append(sq.us, q.U...)
			sq.un[i] = norm2(q.U)
		}
	}
	sq.axs, sq.aus = absAll(sq.xs), absAll(sq.us)
	return sq, nil
}

func norm2(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s) * (1 + 1e-12)
}

func absAll(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(math.Abs(float64(x)))
	}
	return out
}

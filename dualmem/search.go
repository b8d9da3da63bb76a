package dualmem

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// SearchOptions tunes Search.
type SearchOptions struct {
	TopK     int // per query and ranking, at least 1
	From, To int // memory tokens [From, To) (To 0 means N), as in ScanOptions
	Workers  int // goroutines (default GOMAXPROCS)
	// SkipAttention or SkipContribution leaves that ranking out (its lists come back
	// empty), so the search reads only what the other one needs.
	SkipAttention, SkipContribution bool
}

// What a search read goes into ScanStats (scanstats.go): BytesTotal is what a full scan
// reads (4·(DIn+DOut) bytes per token in range); BytesRead counts DIn bytes per token whose
// key codes were read, DOut per token whose gradient codes were read for a projection, one
// per token and token query that read its gradient code, and 4·(DIn+DOut) per token refined
// in float32, so it can exceed BytesTotal where nothing prunes. Its blocks are the search's
// (at most 64 tokens of one step), and BlocksRead counts those whose codes were read.

// SearchResult is what Search found for one query. Stats are the batch's: one read serves
// every query of it.
type SearchResult struct {
	TopAttention    []Hit // by |α|, largest first (as Result.TopAttention)
	TopContribution []Hit // by signed contribution, largest first (as Result.TopContribution)
	Stats           ScanStats
}

// searchIndex is a Scanner's block layout and bounds, built on first use.
type searchIndex struct {
	bb     *blockBounds
	perm   []int32 // token indices, block by block, step by step
	bstart []int32 // per block: its first position in perm; then len(perm)
	sblk   []int32 // per step: its first block; then the block count
	bstep  []int32 // per block: its step
	tstart []int   // per step: its first token; then N
	top    boxes   // the whole-step box of every step
}

func (s *Scanner) index() *searchIndex {
	s.searchOnce.Do(func() { s.sidx = s.buildIndex() })
	return s.sidx
}

func (s *Scanner) buildIndex() *searchIndex {
	m := s.Mem
	T := len(m.Steps)
	ix := &searchIndex{perm: make([]int32, 0, s.N), sblk: make([]int32, 1, T+1), tstart: make([]int, T+1), bstart: []int32{0}}
	var perm, ends []int32
	for t, si := range m.Steps {
		a := ix.tstart[t]
		ix.tstart[t+1] = a + si.Tokens()
		perm, ends = stepBlocks(m.Targets[a:ix.tstart[t+1]], make([]int32, si.Tokens()), ends)
		base := int32(len(ix.perm))
		for _, j := range perm {
			ix.perm = append(ix.perm, int32(a)+j)
		}
		for _, e := range ends {
			ix.bstart = append(ix.bstart, base+e)
		}
		ix.sblk = append(ix.sblk, int32(len(ix.bstart)-1))
		for range ends {
			ix.bstep = append(ix.bstep, int32(t))
		}
	}
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

// node is a step (−1−t) or a block (≥ 0) with its upper bound for one query and ranking.
type node struct {
	ub float64
	id int32
}

// nodeHeap is a max-heap of nodes by ub, typed rather than through container/heap: the
// queues hold every step and pop most of them.
type nodeHeap []node

func (h nodeHeap) Len() int { return len(h) }

func (h nodeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *nodeHeap) push(n node) {
	*h = append(*h, n)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if a[p].ub >= a[i].ub {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
}

func (h *nodeHeap) pop() node {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	*h = a[:last]
	(*h).down(0)
	return top
}

func (h nodeHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		if r := l + 1; r < len(h) && h[r].ub > h[l].ub {
			l = r
		}
		if h[i].ub >= h[l].ub {
			return
		}
		h[i], h[l] = h[l], h[i]
		i = l
	}
}

// push is one node for queue qr found by a worker.
type push struct {
	qr int
	n  node
}

// cand is block bound ub on queue qr, in a block's list (searchRun.head).
type cand struct {
	ub   float64
	qr   int32
	next int32
}

// found is one hit for queue qr (2q: attention, 2q+1: contribution) found by a worker.
type found struct {
	qr int
	h  Hit
}

// Search returns, per query, the same top-k by attention and by contribution as Scan over
// [From, To) (ties aside), reading only the blocks whose bound can still enter a top-k:
// best-first over whole steps, then their blocks, each query and ranking keeping its queue
// of bounds; it stops when every queue's best bound is below its k-th best hit. A block read
// serves every query. Block bounds come from the segment files' sidecar, or are computed in
// memory on first use.
func (s *Scanner) Search(ctx context.Context, qs []Query, opt SearchOptions) ([]SearchResult, error) {
	name := s.Mem.Spec.Name
	if opt.TopK < 1 {
		return nil, fmt.Errorf("dualmem: search %q: top-k %d, want at least 1", name, opt.TopK)
	}
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.To == 0 {
		opt.To = s.N
	}
	if opt.From < 0 || opt.From > opt.To || opt.To > s.N {
		return nil, fmt.Errorf("dualmem: search %q: token range [%d, %d) outside [0, %d)", name, opt.From, opt.To, s.N)
	}
	if len(qs) == 0 {
		return nil, nil
	}
	sq, err := s.prepare(qs)
	if err != nil {
		return nil, err
	}
	ix := s.index()
	r := &searchRun{s: s, ix: ix, sq: sq, from: opt.From, to: opt.To, k: opt.TopK, workers: opt.Workers,
		skip: [2]bool{opt.SkipAttention, opt.SkipContribution}}
	if err := r.run(ctx); err != nil {
		return nil, err
	}
	out := make([]SearchResult, len(qs))
	for qi := range out {
		out[qi] = SearchResult{TopAttention: r.hits[2*qi].sorted(), TopContribution: r.hits[2*qi+1].sorted(), Stats: r.stats}
	}
	return out, nil
}

// searchRun is one Search's state.
type searchRun struct {
	s        *Scanner
	ix       *searchIndex
	sq       *searchQueries
	from, to int
	k        int
	workers  int
	skip     [2]bool // per ranking (attention, contribution)

	queues   []nodeHeap // per queue qr
	hits     []*hitHeap // per queue qr
	stepDone []bool     // per step: expanded
	blkDone  []bool     // per block: read
	// The queues each block was pushed on, with its bound there: a list per block, from
	// head[b] through cands[·].next (0 ends it; cands[0] is unused).
	head   []int32
	cands  []cand
	stats  ScanStats
	t0, t1 int // steps in range
	// The whole-step bounds of each query: [q*(t1−t0) + t−t0].
	stepAtt, stepCon []float64
	rowBytes         int64
}

func (r *searchRun) theta(qr int) float64 { return r.hits[qr].min }

func (r *searchRun) run(ctx context.Context) error {
	s, ix, Q := r.s, r.ix, len(r.sq.qs)
	r.rowBytes = int64(4 * (s.DIn + s.DOut))
	r.stats.BytesTotal = int64(r.to-r.from) * r.rowBytes
	r.queues, r.hits = make([]nodeHeap, 2*Q), make([]*hitHeap, 2*Q)
	r.stepDone, r.blkDone = make([]bool, len(ix.sblk)-1), make([]bool, len(ix.bstart)-1)
	r.head, r.cands = make([]int32, len(ix.bstart)-1), make([]cand, 1, 1024)
	for qr := range r.hits {
		r.hits[qr] = &hitHeap{abs: qr%2 == 0, k: r.k, min: math.Inf(-1)}
		if r.skip[qr%2] { // nothing beats +Inf: the queue is never seeded nor fed
			r.hits[qr].min = math.Inf(1)
		}
	}
	if r.from == r.to {
		return nil
	}
	r.t0, r.t1 = s.StepIndex(r.from), s.StepIndex(r.to-1)+1
	for t := r.t0; t < r.t1; t++ {
		for b := ix.sblk[t]; b < ix.sblk[t+1]; b++ {
			if r.inRange(b) {
				r.stats.BlocksTotal++
			}
		}
	}
	// The whole-step bounds seed every queue.
	n := r.t1 - r.t0
	sub := ix.top.sub(r.t0, r.t1)
	att, con := make([]float64, n*Q), make([]float64, n*Q)
	all := make([]int, Q)
	for qi := range all {
		all[qi] = qi
	}
	r.sq.ubs(sub, func(i int) float64 { return s.SW[r.t0+i] }, all, att, con, &scratch{})
	r.stepAtt, r.stepCon = att, con
	for qi := range Q {
		a, c := make(nodeHeap, 0, n), make(nodeHeap, 0, n)
		for i := range n {
			if t := r.t0 + i; ix.sblk[t+1] > ix.sblk[t] {
				a, c = append(a, node{att[qi*n+i], int32(-1 - t)}), append(c, node{con[qi*n+i], int32(-1 - t)})
			}
		}
		a.init()
		c.init()
		if !r.skip[0] {
			r.queues[2*qi] = a
		}
		if !r.skip[1] {
			r.queues[2*qi+1] = c
		}
	}
	const perQueue = 2 // nodes each queue nominates per round
	ws := make([]scratch, r.workers)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var jobs []int32
		for qr := range r.queues {
			q := &r.queues[qr]
			for taken := 0; taken < perQueue && q.Len() > 0; {
				top := (*q)[0]
				if top.ub < r.theta(qr) {
					break
				}
				q.pop()
				if r.claim(top.id) {
					continue
				}
				jobs = append(jobs, top.id)
				taken++
			}
		}
		if len(jobs) == 0 {
			return nil
		}
		r.round(jobs, ws)
	}
}

// claim marks a node processed and reports whether it already was.
func (r *searchRun) claim(id int32) bool {
	done := &r.blkDone
	if id < 0 {
		done, id = &r.stepDone, -1-id
	}
	was := (*done)[id]
	(*done)[id] = true
	return was
}

// inRange reports whether block b holds a token in [from, to).
func (r *searchRun) inRange(b int32) bool {
	for _, j := range r.ix.perm[r.ix.bstart[b]:r.ix.bstart[b+1]] {
		if int(j) >= r.from && int(j) < r.to {
			return true
		}
	}
	return false
}

// round processes jobs (steps to expand, blocks to read) over the workers, then merges what
// they found into the queues and the top-k heaps.
func (r *searchRun) round(jobs []int32, ws []scratch) {
	thr := make([]float64, len(r.hits))
	for qr := range thr {
		thr[qr] = r.theta(qr)
	}
	workers := min(len(ws), len(jobs))
	pushes, founds := make([][]push, workers), make([][]found, workers)
	reads := make([]ScanStats, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(jobs); i = int(next.Add(1) - 1) {
				if id := jobs[i]; id < 0 {
					pushes[w] = r.expand(int(-1-id), thr, pushes[w], &ws[w])
				} else {
					founds[w] = r.read(id, thr, founds[w], &reads[w], &ws[w])
				}
			}
		}()
	}
	wg.Wait()
	for w := range workers {
		for _, f := range founds[w] {
			r.hits[f.qr].offer(f.h, r.k)
		}
		r.stats.BytesRead += reads[w].BytesRead
		r.stats.BlocksRead += reads[w].BlocksRead
	}
	for w := range workers {
		for _, p := range pushes[w] {
			if p.n.ub >= r.theta(p.qr) {
				r.queues[p.qr].push(p.n)
				r.cands = append(r.cands, cand{ub: p.n.ub, qr: int32(p.qr), next: r.head[p.n.id]})
				r.head[p.n.id] = int32(len(r.cands) - 1)
			}
		}
	}
}

// expand computes the bounds of step t's blocks for the queries whose whole-step bound can
// still enter their top-k, and returns those that can still enter a queue's top-k.
func (r *searchRun) expand(t int, thr []float64, out []push, w *scratch) []push {
	nt, it := r.t1-r.t0, t-r.t0
	sel := w.esel[:0]
	for qi := range r.sq.qs {
		if r.stepAtt[qi*nt+it] >= thr[2*qi] || r.stepCon[qi*nt+it] >= thr[2*qi+1] {
			sel = append(sel, qi)
		}
	}
	w.esel = sel
	if len(sel) == 0 {
		return out
	}
	b := r.ix.bb.step(t)
	first := r.ix.sblk[t]
	n := b.n - 1
	att, con := w.f64(&w.att, n*len(sel)), w.f64(&w.con, n*len(sel))
	sw := r.s.SW[t]
	r.sq.ubs(b.sub(1, b.n), func(int) float64 { return sw }, sel, att, con, w)
	partial := t == r.t0 || t == r.t1-1
	for i := range n {
		id := first + int32(i)
		if partial && !r.inRange(id) {
			continue
		}
		for l, qi := range sel {
			if a := att[l*n+i]; a >= thr[2*qi] {
				out = append(out, push{2 * qi, node{a, id}})
			}
			if c := con[l*n+i]; c >= thr[2*qi+1] {
				out = append(out, push{2*qi + 1, node{c, id}})
			}
		}
	}
	return out
}

// read bounds the α of block b's tokens in range from their int8 codes and refines those
// whose bound can still enter a queue's top-k. Each query first bounds the whole block at
// the current thresholds (the box and the ball, see bounds.go); only the queries it can
// still serve read the codes, since the codes cost as many products per query as the keys.
// With y = r⊙x, the code gives α̃ = c·x + (q·y)/127, and the float32 α that Scan computes is
// within E = r·|x|·(1/254 + 2γ_d) + boundSlack·γ_d·nk·‖x‖ of it (the code's rounding, the
// float32 sum of q·y, and α's own rounding); c·x and r·|x| are taken in float32, within the
// rest of boundSlack.
func (r *searchRun) read(b int32, thr []float64, out []found, st *ScanStats, w *scratch) []found {
	s, sq, ix := r.s, r.sq, r.ix
	din, dout := s.DIn, s.DOut
	t := int(ix.bstep[b])
	p0 := ix.bstart[ix.sblk[t]]
	bx, k := ix.bb.step(t), int(b-ix.sblk[t])+1
	c, rr := bx.c[k*din:(k+1)*din], bx.r[k*din:(k+1)*din]
	toks := w.toks[:0]
	for p := ix.bstart[b]; p < ix.bstart[b+1]; p++ {
		if j := ix.perm[p]; int(j) >= r.from && int(j) < r.to {
			toks = append(toks, j, p-p0)
		}
	}
	w.toks = toks
	nb := len(toks) / 2
	if nb == 0 {
		return out
	}
	g, ga, gg := gamma(din), boundSlack*gamma(din), boundSlack*gamma(dout)
	sw := s.SW[t]
	// Only queries whose expand-time bound reached their k-th best then, and still does,
	// can be served: thresholds only rise.
	sel := w.sel[:0]
	for c := r.head[b]; c != 0; c = r.cands[c].next {
		if cd := r.cands[c]; cd.ub >= thr[cd.qr] && (len(sel) == 0 || sel[len(sel)-1] != int(cd.qr/2)) {
			sel = append(sel, int(cd.qr/2))
		}
	}
	slices.Sort(sel)
	sel = slices.Compact(sel)
	if len(sel) == 0 {
		return out
	}
	// c·x and r·|x| (and gc·u, gr·|u|) in float32, the selected queries' rows as the
	// kernel's keys; their rounding is within boundSlack's margin, as in ubs.
	L := len(sel)
	xs, axs := w.f32(&w.gx, L*din), w.f32(&w.gax, L*din)
	nh := 0
	for l, qi := range sel {
		copy(xs[l*din:(l+1)*din], sq.xs[qi*din:])
		copy(axs[l*din:(l+1)*din], sq.axs[qi*din:])
		if h := sq.hq[qi]; h >= 0 {
			w.gus = append(w.gus[:nh*dout], sq.us[h*dout:(h+1)*dout]...)
			w.gaus = append(w.gaus[:nh*dout], sq.aus[h*dout:(h+1)*dout]...)
			nh++
		}
	}
	cxs, rxs := w.f32(&w.cx, L), w.f32(&w.rx, L)
	dotBlockAVX(xs, L, din, c, 1, cxs)
	dotBlockAVX(axs, L, din, rr, 1, rxs)
	var gcs, grs []float32
	if nh > 0 {
		gcs, grs = w.f32(&w.gcu, nh), w.f32(&w.gru, nh)
		dotBlockAVX(w.gus, nh, dout, bx.gc[k*dout:(k+1)*dout], 1, gcs)
		dotBlockAVX(w.gaus, nh, dout, bx.gr[k*dout:(k+1)*dout], 1, grs)
	}
	live := w.live[:0]
	h := 0
	for l, qi := range sel {
		q := sq.qs[qi]
		ta, tc := thr[2*qi], thr[2*qi+1]
		cx, rx := float64(cxs[l]), float64(rxs[l])
		e := rx*(1.0/254*(1+1e-6)+2*g) + ga*float64(bx.nk[k])*sq.xn[qi]
		var gc, gr, gr0 float64 // gr0: gr·|u| alone
		if q.Token >= 0 {
			gc, gr = float64(bx.gc[k*dout+q.Token]), float64(bx.gr[k*dout+q.Token])
			gr0 = gr
		} else {
			gc, gr = float64(gcs[h]), float64(grs[h])
			gr0 = gr
			gr = math.Min(gr, float64(bx.rg[k])*sq.un[qi]) + gg*float64(bx.ng[k])*sq.un[qi]
			h++
		}
		ge := relSlack * (math.Abs(gc) + gr)
		// G = s_t·(g·u) lies in [glo, ghi]; α·G is largest at an end of α's interval, times
		// ghi where α ≥ 0 and glo where α < 0.
		glo, ghi := sw*(gc-gr-ge), sw*(gc+gr+ge)
		if glo > ghi {
			glo, ghi = ghi, glo
		}
		gm := max(-glo, ghi)
		// The whole block first: its α interval is c·x ± min(r·|x|, rk·‖x‖), widened by e.
		bw := math.Min(rx, float64(bx.rk[k])*sq.xn[qi]) + e + relSlack*(math.Abs(cx)+rx+e)
		if math.Abs(cx)+bw < ta && conUB(cx-bw, cx+bw, glo, ghi, gm) < tc {
			continue
		}
		// A token's contribution bound is at most (|α̃|+E)·gm·(1+8·relSlack), so one whose
		// |α̃|+E is below lim enters neither list; only the others take the full test.
		lim := ta
		switch {
		case gm > 0:
			lim = math.Min(lim, tc/(gm*(1+8*relSlack)))
		case tc <= 0: // a zero contribution can still enter
			lim = math.Inf(-1)
		}
		lq := liveQuery{qi: qi, cx: cx, e: e, glo: glo, ghi: ghi, gm: gm, gc: gc, gr: gr0, hrow: -1}
		// A gradient code gives g·u to within eg: the code's rounding, and for a projection
		// the float32 sums as for α (the part for g·u's own rounding is in gr already).
		lq.eg = gr0*(1.0/254*(1+1e-6)) + relSlack*(math.Abs(gc)+gr0)
		if q.Token < 0 {
			lq.eg += gr0*2*gamma(dout) + gg*float64(bx.ng[k])*sq.un[qi]
		}
		lq.vlo, lq.vhi = pruneRange(cx, e, lim)
		live = append(live, lq)
	}
	w.live = live
	if len(live) == 0 {
		return out
	}
	st.BlocksRead++
	st.BytesRead += int64(nb * din)
	codes := ix.bb.codes(t, ix.tstart[t+1]-ix.tstart[t])
	np := (nb + 3) &^ 3
	cb := w.f32(&w.kb, np*din)
	clear(cb[nb*din:])
	if p := int(toks[1]); int(toks[2*nb-1]) == p+nb-1 { // the block's tokens, in a row
		widenI8(cb, codes[p*din:(p+nb)*din])
	} else {
		for i := range nb {
			widenI8(cb[i*din:], codes[int(toks[2*i+1])*din:][:din])
		}
	}
	L = len(live)
	y := w.f32(&w.y, L*din)
	for li, lq := range live {
		for i, x := range sq.xs[lq.qi*din : (lq.qi+1)*din] {
			y[li*din+i] = rr[i] * x
		}
	}
	at := w.f32(&w.alpha, np*L)
	dotBlockAVX(cb, np, din, y, L, at)
	gat := r.gradCodes(t, bx.gr[k*dout:(k+1)*dout], toks, live, thr, st, w)
	keep := w.keep[:0]
	for range nb {
		keep = append(keep, false)
	}
	gcodes := ix.bb.gcodes(t, ix.tstart[t+1]-ix.tstart[t])
	sel = sel[:0]
	for li, lq := range live {
		ta, tc := thr[2*lq.qi], thr[2*lq.qi+1]
		tok := sq.qs[lq.qi].Token
		kept := false
		for i, v := range at[li*np : li*np+nb] {
			if v > lq.vlo && v < lq.vhi {
				continue
			}
			a := lq.cx + float64(v)/127
			ae := lq.e + relSlack*(math.Abs(a)+lq.e)
			if math.Abs(a)+ae >= ta {
				keep[i], kept = true, true
				continue
			}
			glo, ghi, gm := lq.glo, lq.ghi, lq.gm
			if !math.IsInf(tc, 1) { // the token's own G interval from its gradient code
				var gu float64
				if tok >= 0 {
					gu = lq.gc + lq.gr*float64(gcodes[int(toks[2*i+1])*dout+tok])/127
				} else {
					gu = lq.gc + float64(gat[lq.hrow*np+i])/127
				}
				l, h := sw*(gu-lq.eg), sw*(gu+lq.eg)
				if l > h {
					l, h = h, l
				}
				sl := relSlack * (math.Abs(l) + math.Abs(h))
				if l, h = max(glo, l-sl), min(ghi, h+sl); l <= h {
					glo, ghi, gm = l, h, max(-l, h)
				}
			}
			if conUB(a-ae, a+ae, glo, ghi, gm) >= tc {
				keep[i], kept = true, true
			}
		}
		if kept {
			sel = append(sel, lq.qi)
		}
	}
	w.keep, w.sel = keep, sel
	surv := w.surv[:0]
	for i := range nb {
		if keep[i] {
			surv = append(surv, toks[2*i])
		}
	}
	w.surv = surv
	if len(surv) == 0 {
		return out
	}
	st.BytesRead += int64(len(surv)) * r.rowBytes
	return r.refine(surv, sel, thr, out, w)
}

// liveQuery is a query that block bounds could not rule out, with what its token test
// needs: a token whose q·y lies in (vlo, vhi) enters neither of its lists.
type liveQuery struct {
	qi                  int
	cx, e, glo, ghi, gm float64
	vlo, vhi            float32
	// For the token's own G: g·u ≈ gc + (code·(gr⊙u))/127 within eg (for a token query,
	// gc + gr·code/127); hrow is the query's row in gradCodes' products, or −1.
	gc, gr, eg float64
	hrow       int
}

// gradCodes returns the products of block tokens toks' (token, position pairs) gradient
// codes with gr⊙u (gr the block's gradient radii) for the live projection queries that rank
// by contribution, [hrow·np + i], setting their hrow; nil when there are none. It counts
// what the token queries read of the codes too (a byte per token each).
func (r *searchRun) gradCodes(t int, gr []float32, toks []int32, live []liveQuery, thr []float64, st *ScanStats, w *scratch) []float32 {
	ix, sq := r.ix, r.sq
	dout := r.s.DOut
	nb := len(toks) / 2
	np := (nb + 3) &^ 3
	H := 0
	for li := range live {
		qi := live[li].qi
		if math.IsInf(thr[2*qi+1], 1) {
			continue
		}
		if sq.qs[qi].Token >= 0 {
			st.BytesRead += int64(nb)
			continue
		}
		live[li].hrow = H
		H++
	}
	if H == 0 {
		return nil
	}
	st.BytesRead += int64(nb * dout)
	gcodes := ix.bb.gcodes(t, ix.tstart[t+1]-ix.tstart[t])
	gb := w.f32(&w.gcb, np*dout)
	clear(gb[nb*dout:])
	if p := int(toks[1]); int(toks[2*nb-1]) == p+nb-1 {
		widenI8(gb, gcodes[p*dout:(p+nb)*dout])
	} else {
		for i := range nb {
			widenI8(gb[i*dout:], gcodes[int(toks[2*i+1])*dout:][:dout])
		}
	}
	yg := w.f32(&w.yg, H*dout)
	for _, lq := range live {
		if lq.hrow >= 0 {
			u := sq.qs[lq.qi].U
			for o, g := range gr {
				yg[lq.hrow*dout+o] = g * u[o]
			}
		}
	}
	gat := w.f32(&w.gat, np*H)
	dotBlockAVX(gb, np, dout, yg, H, gat)
	return gat
}

// pruneRange is the range (vlo, vhi) of v = q·y for which α̃ = cx + v/127 has |α̃| + E
// below lim, with E = e + relSlack·(|α̃| + e) as in read: |α̃| < m for
// m = (lim − e·(1+relSlack))/(1+relSlack). It is narrowed by 1e-9 of its scale for the
// float64 roundings, and its ends rounded inwards to float32; empty when m ≤ 0.
func pruneRange(cx, e, lim float64) (vlo, vhi float32) {
	none := [2]float32{float32(math.Inf(1)), float32(math.Inf(-1))}
	m := (lim - e*(1+relSlack)) / (1 + relSlack)
	if !(m > 0) || math.IsInf(m, 0) {
		return none[0], none[1]
	}
	d := 1e-9 * (math.Abs(cx) + m)
	lo, hi := 127*(-m-cx+d), 127*(m-cx-d)
	if !(lo < hi) {
		return none[0], none[1]
	}
	vlo, vhi = float32(lo), float32(hi)
	if float64(vlo) < lo {
		vlo = math.Nextafter32(vlo, float32(math.Inf(1)))
	}
	if float64(vhi) > hi {
		vhi = math.Nextafter32(vhi, float32(math.Inf(-1)))
	}
	return vlo, vhi
}

// conUB bounds α·G over α in [alo, ahi] and G in [glo, ghi] (gm = max |G|).
func conUB(alo, ahi, glo, ghi, gm float64) float64 {
	f := func(a float64) float64 {
		if a >= 0 {
			return a * ghi
		}
		return a * glo
	}
	u, v := f(alo), f(ahi)
	if v > u {
		u = v
	}
	return u + 4*relSlack*(abs(alo)+abs(ahi))*gm
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// refine computes the exact α and contribution of tokens toks (of one step) for queries
// sel, as Scan does, and returns the hits that beat a queue's k-th best.
func (r *searchRun) refine(toks []int32, sel []int, thr []float64, out []found, w *scratch) []found {
	s, sq := r.s, r.sq
	din, dout := s.DIn, s.DOut
	nb, L := len(toks), len(sel)
	// Zero rows pad the block to a multiple of 4 keys, so every key takes the kernel's
	// 4-key path, as in Scan, and gets the same float32 α.
	np := (nb + 3) &^ 3
	kb := w.f32(&w.kb, np*din)
	clear(kb[nb*din:])
	for i, j := range toks {
		copy(kb[i*din:(i+1)*din], s.Mem.Keys[int(j)*din:])
	}
	xs := w.f32(&w.xsel, L*din)
	var us []float32
	nh := 0
	for li, qi := range sel {
		copy(xs[li*din:(li+1)*din], sq.xs[qi*din:])
		if h := sq.hq[qi]; h >= 0 {
			us = append(w.usel[:nh*dout], sq.us[h*dout:(h+1)*dout]...)
			w.usel = us
			nh++
		}
	}
	alpha := w.f32(&w.alpha, np*L)
	dotBlockAVX(kb, np, din, xs, L, alpha)
	var gus []float32
	if nh > 0 {
		gb := w.f32(&w.gb, np*dout)
		clear(gb[nb*dout:])
		for i, j := range toks {
			copy(gb[i*dout:(i+1)*dout], s.Mem.Grads[int(j)*dout:])
		}
		gus = w.f32(&w.gu, np*nh)
		dotBlockAVX(gb, np, dout, us, nh, gus)
	}
	sw := s.SW[s.StepIndex(int(toks[0]))]
	h := 0
	for li, qi := range sel {
		q := sq.qs[qi]
		ta, tc := thr[2*qi], thr[2*qi+1]
		hu := -1
		if q.Token < 0 {
			hu, h = h, h+1
		}
		for i, j := range toks {
			a := float64(alpha[li*np+i])
			var gu float64
			if hu < 0 {
				gu = float64(s.Mem.Grads[int(j)*dout+q.Token])
			} else {
				gu = float64(gus[hu*np+i])
			}
			c := a * sw * gu
			if math.Abs(a) > ta {
				out = append(out, found{2 * qi, Hit{Index: int(j), Alpha: a, Contribution: c}})
			}
			if c > tc {
				out = append(out, found{2*qi + 1, Hit{Index: int(j), Alpha: a, Contribution: c}})
			}
		}
	}
	return out
}

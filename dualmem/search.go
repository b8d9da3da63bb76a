package dualmem

import (
	"context"
	"fmt"
	"math"
	"runtime"
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
	// Split deals the steps out to one search per worker, sharing their thresholds (see
	// runSplit): no worker waits for another, at the cost of the pruning each part's own
	// early hits could have done for the others.
	Split bool
	// Steps, when set, holds each query's step bounds from BoundSteps over [From, To) on
	// this scanner, which the search then does not compute.
	Steps []StepBounds
}

// StepBounds are one query's bounds on every whole step of a token range, by attention and
// by contribution: what a search computes first, before it looks at any block. A caller
// that learns its queries one at a time (a generation, token by token) computes them with
// BoundSteps as each comes, while the next is still being generated, and hands them to
// Search in SearchOptions.Steps.
type StepBounds struct {
	s        *Scanner
	from, to int
	att, con []float64 // per step of the range
}

// What a search read goes into ScanStats (scanstats.go): BytesTotal is what a full scan
// reads (4·(DIn+DOut) bytes per token in range); BytesRead counts DIn bytes per token whose
// key codes were read, up to DOut per token whose gradient codes were read (the whole row
// for a projection, a byte per token query), and 4·(DIn+DOut) per token refined in float32,
// so it can exceed BytesTotal (by a quarter) where nothing prunes. Its blocks are the search's
// (at most 64 tokens of one step), and BlocksRead counts those whose codes were read.

// SearchResult is what Search found for one query. Stats are the batch's: one read serves
// every query of it.
type SearchResult struct {
	TopAttention    []Hit // by |α|, largest first (as Result.TopAttention)
	TopContribution []Hit // by signed contribution, largest first (as Result.TopContribution)
	Stats           ScanStats
}

// push is one node for queue qr found by a worker.
type push struct {
	qr  int
	n   node
	box blockBox
}

// cand is block bound ub on queue qr, in a block's list (searchRun.head), with the block's
// products that read needs.
type cand struct {
	ub   float64
	qr   int32
	next int32
	box  blockBox
}

// candPool keeps the cand lists of finished searches: a large search's list grows to
// hundreds of thousands, and growing it again copies it a dozen times.
var candPool sync.Pool

func getCands() []cand {
	if p, ok := candPool.Get().(*[]cand); ok {
		return (*p)[:1]
	}
	return make([]cand, 1, 1024)
}

func putCands(c []cand) { candPool.Put(&c) }

// blockBox is what ubs computed of a block's boxes for one query, in float32, which read
// takes rather than computing it again: c·x and r·|x|, and g·u's centre and radius (gc·u and
// gr·|u|, or a one-hot query's gc_v and gr_v).
type blockBox struct{ cx, rx, gc, gr float32 }

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
	var err error
	if opt.From, opt.To, err = s.searchRange("search", opt.From, opt.To); err != nil {
		return nil, err
	}
	if opt.Steps != nil {
		if len(opt.Steps) != len(qs) {
			return nil, fmt.Errorf("dualmem: search %q: %d step bounds for %d queries", name, len(opt.Steps), len(qs))
		}
		for i, sb := range opt.Steps {
			if sb.s != s || sb.from != opt.From || sb.to != opt.To {
				return nil, fmt.Errorf("dualmem: search %q: query %d's step bounds are for another memory or token range", name, i)
			}
		}
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
		skip: [2]bool{opt.SkipAttention, opt.SkipContribution}, steps: opt.Steps}
	run := r.run
	if opt.Split && opt.Workers > 1 {
		run = r.runSplit
	}
	err = run(ctx)
	putCands(r.cands)
	if err != nil {
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

	queues   []queue    // per queue qr
	hits     []*hitHeap // per queue qr
	stepDone []bool     // per step: expanded
	blkDone  []bool     // per block: read
	// The queues each block was pushed on, with its bound there: a list per block, from
	// head[b] through cands[·].next (0 ends it; cands[0] is unused).
	head     []int32
	cands    []cand
	stats    ScanStats
	t0, t1   int          // steps in range
	steps    []StepBounds // each query's whole-step bounds: the caller's, or computed first
	rowBytes int64
	board    *thetaBoard // a split search's shared thresholds; nil otherwise
	thr      []float64   // a round's thresholds, per queue
}

// theta is queue qr's threshold: its k-th best so far, or a better one another part of a
// split search found (see runSplit).
func (r *searchRun) theta(qr int) float64 {
	m := r.hits[qr].min
	if r.board != nil {
		m = max(m, r.board.load(qr))
	}
	return m
}

func (r *searchRun) run(ctx context.Context) error {
	if !r.init() {
		return nil
	}
	ws := make([]scratch, r.workers)
	if r.steps != nil {
		r.seedQueues(0, len(r.sq.qs), 0, 1)
	} else {
		r.stepBounds(ws, func(lo, hi int) { r.seedQueues(lo, hi, 0, 1) })
	}
	return r.loop(ctx, ws)
}

// searchRange checks a token range [from, to) (to 0 meaning N) and returns it with to set.
func (s *Scanner) searchRange(op string, from, to int) (int, int, error) {
	if to == 0 {
		to = s.N
	}
	if from < 0 || from > to || to > s.N {
		return 0, 0, fmt.Errorf("dualmem: %s %q: token range [%d, %d) outside [0, %d)", op, s.Mem.Spec.Name, from, to, s.N)
	}
	return from, to, nil
}

// stepRange is the steps [t0, t1) that hold the tokens [from, to), none when it is empty.
func (s *Scanner) stepRange(from, to int) (t0, t1 int) {
	if from == to {
		return 0, 0
	}
	return s.StepIndex(from), s.StepIndex(to-1) + 1
}

// BoundSteps computes, on the calling goroutine, the step bounds that Search over
// [from, to) (to 0 meaning N) would compute first for each query of qs.
func (s *Scanner) BoundSteps(qs []Query, from, to int) ([]StepBounds, error) {
	from, to, err := s.searchRange("bound steps", from, to)
	if err != nil {
		return nil, err
	}
	sq, err := s.prepare(qs)
	if err != nil {
		return nil, err
	}
	t0, t1 := s.stepRange(from, to)
	n, all := t1-t0, make([]int, len(qs))
	for qi := range all {
		all[qi] = qi
	}
	out, att, con := s.newStepBounds(len(qs), from, to, n)
	if n > 0 {
		sq.ubs(s.index().top.sub(t0, t1), s.SW[t0:t1], 0, all, att, con, &scratch{})
	}
	return out, nil
}

// newStepBounds allocates the step bounds of Q queries over [from, to), n steps, each a
// view of the arrays att and con ([q·n + t−t0]) that ubs fills in.
func (s *Scanner) newStepBounds(Q, from, to, n int) (out []StepBounds, att, con []float64) {
	att, con = make([]float64, n*Q), make([]float64, n*Q)
	out = make([]StepBounds, Q)
	for qi := range out {
		out[qi] = StepBounds{s: s, from: from, to: to, att: att[qi*n : (qi+1)*n : (qi+1)*n], con: con[qi*n : (qi+1)*n : (qi+1)*n]}
	}
	return out, att, con
}

// init allocates the run's state and counts the blocks in range; false when the range is
// empty.
func (r *searchRun) init() bool {
	s, ix, Q := r.s, r.ix, len(r.sq.qs)
	r.rowBytes = int64(4 * (s.DIn + s.DOut))
	r.stats.BytesTotal = int64(r.to-r.from) * r.rowBytes
	r.queues, r.hits = make([]queue, 2*Q), make([]*hitHeap, 2*Q)
	r.stepDone, r.blkDone = make([]bool, len(ix.sblk)-1), make([]bool, len(ix.bstart)-1)
	r.head, r.cands = make([]int32, len(ix.bstart)-1), getCands()
	for qr := range r.hits {
		r.hits[qr] = &hitHeap{abs: qr%2 == 0, k: r.k, min: math.Inf(-1)}
		if r.skip[qr%2] { // nothing beats +Inf: the queue is never seeded nor fed
			r.hits[qr].min = math.Inf(1)
		}
	}
	if r.from == r.to {
		return false
	}
	r.t0, r.t1 = s.stepRange(r.from, r.to)
	for t := r.t0; t < r.t1; t++ {
		if t > r.t0 && t < r.t1-1 { // a step inside the range: all its blocks
			r.stats.BlocksTotal += int64(ix.sblk[t+1] - ix.sblk[t])
			continue
		}
		for b := ix.sblk[t]; b < ix.sblk[t+1]; b++ {
			if r.inRange(b) {
				r.stats.BlocksTotal++
			}
		}
	}
	return true
}

// loop runs rounds until no queue can still enter its top-k.
func (r *searchRun) loop(ctx context.Context, ws []scratch) error {
	// Each queue nominates perQueue nodes a round; with several workers, while a round has
	// fewer than minJobs (late in a search, when most queues are done), the live queues
	// nominate more, so the workers share each round: a node taken early may turn out below
	// a threshold that its round raised, which costs its read and changes no answer.
	const perQueue = 2
	minJobs := 0
	if len(ws) > 1 {
		minJobs = 4 * len(ws)
	}
	var jobs []int32
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		jobs = jobs[:0]
		for quota := perQueue; ; quota = 1 {
			before := len(jobs)
			for qr := range r.queues {
				jobs = r.nominate(qr, quota, jobs)
			}
			if len(jobs) >= minJobs || len(jobs) == before {
				break
			}
		}
		if len(jobs) == 0 {
			return nil
		}
		r.round(jobs, ws)
		r.publish()
	}
}

// stepBounds computes every query's whole-step bounds, a share of the queries on each
// worker, and calls then(lo, hi) on that worker for its share [lo, hi) once they are set.
func (r *searchRun) stepBounds(ws []scratch, then func(lo, hi int)) {
	Q, n := len(r.sq.qs), r.t1-r.t0
	sub := r.ix.top.sub(r.t0, r.t1)
	var att, con []float64
	r.steps, att, con = r.s.newStepBounds(Q, r.from, r.to, n)
	all := make([]int, Q)
	for qi := range all {
		all[qi] = qi
	}
	workers := min(len(ws), Q)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*Q/workers, (w+1)*Q/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sq.ubs(sub, r.s.SW[r.t0:r.t1], 0, all[lo:hi], att[lo*n:hi*n], con[lo*n:hi*n], &ws[w])
			if then != nil {
				then(lo, hi)
			}
		}()
	}
	wg.Wait()
}

// seedQueues fills the queues of queries [lo, hi) with the steps in range that have blocks
// and that part of parts owns (every parts-th step from the range's first).
func (r *searchRun) seedQueues(lo, hi, part, parts int) {
	ix, n := r.ix, r.t1-r.t0
	for qi := lo; qi < hi; qi++ {
		for k, skip := range r.skip {
			if skip {
				continue
			}
			ubs := r.steps[qi].att
			if k == 1 {
				ubs = r.steps[qi].con
			}
			h := make(nodeHeap, 0, n/parts+1)
			for i := part; i < n; i += parts {
				if t := r.t0 + i; ix.sblk[t+1] > ix.sblk[t] {
					h = append(h, node{ubs[i], int32(-1 - t)})
				}
			}
			r.queues[2*qi+k] = seedQueue(h)
		}
	}
}

// nominate appends up to n unclaimed nodes of queue qr that can still enter its top-k,
// best first, claiming them.
func (r *searchRun) nominate(qr, n int, jobs []int32) []int32 {
	q := &r.queues[qr]
	for taken := 0; taken < n; {
		top, ok := q.top()
		if !ok || top.ub < r.theta(qr) {
			break
		}
		q.h.pop()
		if r.claim(top.id) {
			continue
		}
		jobs = append(jobs, top.id)
		taken++
	}
	return jobs
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
	if len(r.thr) != len(r.hits) {
		r.thr = make([]float64, len(r.hits))
	}
	thr := r.thr
	for qr := range thr {
		thr[qr] = r.theta(qr)
	}
	workers := min(len(ws), len(jobs))
	// Each worker's finds go to buffers of its scratch, kept from round to round.
	for w := range workers {
		ws[w].pushes, ws[w].founds, ws[w].reads = ws[w].pushes[:0], ws[w].founds[:0], ScanStats{}
	}
	var next atomic.Int64
	work := func(w int) {
		sw := &ws[w]
		for i := int(next.Add(1) - 1); i < len(jobs); i = int(next.Add(1) - 1) {
			if id := jobs[i]; id < 0 {
				sw.pushes = r.expand(int(-1-id), thr, sw.pushes, sw)
			} else {
				sw.founds = r.read(id, thr, sw.founds, &sw.reads, sw)
			}
		}
	}
	// The calling goroutine is the first worker: a round then wakes one goroutine fewer.
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(w)
		}()
	}
	work(0)
	wg.Wait()
	for w := range workers {
		for _, f := range ws[w].founds {
			r.hits[f.qr].offer(f.h, r.k)
		}
		r.stats.BytesRead += ws[w].reads.BytesRead
		r.stats.BlocksRead += ws[w].reads.BlocksRead
	}
	for w := range workers {
		for _, p := range ws[w].pushes {
			if p.n.ub >= r.theta(p.qr) {
				r.queues[p.qr].h.push(p.n)
				r.cands = append(r.cands, cand{ub: p.n.ub, qr: int32(p.qr), next: r.head[p.n.id], box: p.box})
				r.head[p.n.id] = int32(len(r.cands) - 1)
			}
		}
	}
}

// expand computes the bounds of step t's blocks for the queries whose whole-step bound can
// still enter their top-k, and returns those that can still enter a queue's top-k.
func (r *searchRun) expand(t int, thr []float64, out []push, w *scratch) []push {
	it := t - r.t0
	sel := w.esel[:0]
	for qi := range r.sq.qs {
		if r.steps[qi].att[it] >= thr[2*qi] || r.steps[qi].con[it] >= thr[2*qi+1] {
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
	r.sq.ubs(b.sub(1, b.n), nil, sw, sel, att, con, w)
	cx, rx, gcu, gru, hs := w.cx, w.rx, w.gcu, w.gru, w.hs // ubs's products, [l*n+i] (gcu, gru: [hs[l]*n+i])
	dout := r.s.DOut
	partial := t == r.t0 || t == r.t1-1
	for i := range n {
		id := first + int32(i)
		if partial && !r.inRange(id) {
			continue
		}
		for l, qi := range sel {
			a, c := att[l*n+i], con[l*n+i]
			ina, inc := a >= thr[2*qi], c >= thr[2*qi+1]
			if !ina && !inc {
				continue
			}
			bb := blockBox{cx: cx[l*n+i], rx: rx[l*n+i]}
			if tok := r.sq.qs[qi].Token; tok >= 0 {
				bb.gc, bb.gr = b.gc[(i+1)*dout+tok], b.gr[(i+1)*dout+tok]
			} else {
				bb.gc, bb.gr = gcu[hs[l]*n+i], gru[hs[l]*n+i]
			}
			if ina {
				out = append(out, push{2 * qi, node{a, id}, bb})
			}
			if inc {
				out = append(out, push{2*qi + 1, node{c, id}, bb})
			}
		}
	}
	return out
}

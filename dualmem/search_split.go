package dualmem

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
)

// A split search deals the steps in range out to one search per worker, each over every
// query with its own queues and top-k heaps on one goroutine, so no worker waits for
// another: a search over all workers meets them after every round of a few dozen nodes,
// and at 16M tokens on 2 cores spent a third of its time waiting there. The parts share
// their thresholds: a part's k-th best is a lower bound of the whole range's, so any part may
// prune by the best of them and still miss nothing of the top-k, which the parts' heaps
// then hold between them. Every block is read by one part at most.

// thetaBoard holds, per queue, the best threshold any part has reached (float64 bits).
type thetaBoard []atomic.Uint64

func newThetaBoard(n int) thetaBoard {
	b := make(thetaBoard, n)
	for i := range b {
		b[i].Store(math.Float64bits(math.Inf(-1)))
	}
	return b
}

func (b thetaBoard) load(qr int) float64 { return math.Float64frombits(b[qr].Load()) }

// raise sets queue qr's threshold to v if v is higher.
func (b thetaBoard) raise(qr int, v float64) {
	for {
		old := b[qr].Load()
		if !(v > math.Float64frombits(old)) || b[qr].CompareAndSwap(old, math.Float64bits(v)) {
			return
		}
	}
}

// runSplit is run over r.workers parts (see above); r gets their merged top-k and reads.
func (r *searchRun) runSplit(ctx context.Context) error {
	if !r.init() {
		return nil
	}
	W := r.workers
	ws := make([]scratch, W)
	board := newThetaBoard(len(r.hits))
	parts := make([]*searchRun, W)
	for p := range parts {
		parts[p] = &searchRun{s: r.s, ix: r.ix, sq: r.sq, from: r.from, to: r.to, k: r.k, workers: 1, skip: r.skip, board: &board}
		parts[p].init()
	}
	if r.steps == nil {
		r.stepBounds(ws, nil)
	}
	errs := make([]error, W)
	var wg sync.WaitGroup
	for p, pr := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr.steps = r.steps
			pr.seedQueues(0, len(r.sq.qs), p, W)
			errs[p] = pr.loop(ctx, ws[p:p+1])
		}()
	}
	wg.Wait()
	for _, pr := range parts {
		putCands(pr.cands)
	}
	for p, pr := range parts {
		if errs[p] != nil {
			return errs[p]
		}
		for qr, h := range pr.hits {
			for _, x := range h.h {
				r.hits[qr].offer(x, r.k)
			}
		}
		r.stats.BytesRead += pr.stats.BytesRead
		r.stats.BlocksRead += pr.stats.BlocksRead
	}
	return nil
}

// publish raises the board's thresholds to the run's own, where they are higher.
func (r *searchRun) publish() {
	if r.board == nil {
		return
	}
	for qr, h := range r.hits {
		if !math.IsInf(h.min, 0) {
			r.board.raise(qr, h.min)
		}
	}
}

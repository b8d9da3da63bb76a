package query

import (
	"cmp"
	"runtime"
	"sync"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// stepPrefetch computes, while a generation runs, the step bounds of each layer answered
// pruned (dualmem.Scanner.BoundSteps) for every token as soon as it is sampled. They are a
// search's first pass over the memory, which would otherwise start after the last token;
// the generation leaves a core idle for them.
type stepPrefetch struct {
	e      *Engine
	rankBy string
	layers []*prefetchLayer
	ch     chan sampled
	done   chan struct{}
}

// prefetchLayer is one layer's scanner and token range, and its tokens' step bounds.
type prefetchLayer struct {
	name   string
	sc     *dualmem.Scanner
	rg     tokens
	bounds []dualmem.StepBounds // per token; set once the worker is done

	mu  sync.Mutex
	err error // why bounds is incomplete
}

func (l *prefetchLayer) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = cmp.Or(l.err, err)
}

// sampled is one generated token, as the generation hands it over.
type sampled struct {
	i   int
	tok int32
	p   lm.Probe
}

// prefetchSteps starts the worker for req, or returns nil when no layer of it is answered
// pruned from the generation's own probes (the only probes known before the generation ends).
// The caller holds e.mu for reading until finish.
func (e *Engine) prefetchSteps(req Request) *stepPrefetch {
	if !e.forwardOnly(req) {
		return nil
	}
	pf := &stepPrefetch{e: e, rankBy: req.RankBy, ch: make(chan sampled, req.Tokens), done: make(chan struct{})}
	for _, name := range req.Layers {
		sc := e.layers[name]
		if sc == nil || !answersPruned(req, sc) {
			continue
		}
		from, to, err := tokenRange(sc, req.Steps)
		if err != nil {
			continue // explain reports it
		}
		pf.layers = append(pf.layers, &prefetchLayer{name: name, sc: sc, rg: tokens{from, to}, bounds: make([]dualmem.StepBounds, req.Tokens)})
	}
	if len(pf.layers) == 0 {
		return nil
	}
	go pf.work()
	return pf
}

// add hands the worker token i; it never blocks (the channel holds every token).
func (pf *stepPrefetch) add(i int, tok int32, p lm.Probe) {
	if i < cap(pf.ch) {
		pf.ch <- sampled{i, tok, p}
	}
}

// work bounds the tokens queued since its last batch, all together: one pass over the step
// boxes serves a batch. Once the generation is over, what is still queued is split over
// the cores, which the search is waiting for.
func (pf *stepPrefetch) work() {
	defer close(pf.done)
	var batch []sampled
	for s := range pf.ch {
		batch = append(batch[:0], s)
		over := false
		for more := true; more; {
			select {
			case s, ok := <-pf.ch:
				if more, over = ok, !ok; ok {
					batch = append(batch, s)
				}
			default:
				more = false
			}
		}
		parts := 1
		if over {
			parts = min(runtime.GOMAXPROCS(0), len(batch))
		}
		var wg sync.WaitGroup
		for p := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pf.bound(batch[p*len(batch)/parts : (p+1)*len(batch)/parts])
			}()
		}
		wg.Wait()
	}
}

// bound computes every layer's step bounds for batch.
func (pf *stepPrefetch) bound(batch []sampled) {
	for _, l := range pf.layers {
		qs := make([]dualmem.Query, len(batch))
		for k, s := range batch {
			qs[k], _ = pf.e.query(l.name, pf.rankBy, s.p, s.tok)
		}
		sb, err := l.sc.BoundSteps(qs, l.rg.from, l.rg.to)
		if err != nil {
			l.fail(err)
			continue
		}
		for k, s := range batch {
			l.bounds[s.i] = sb[k]
		}
	}
}

// finish waits for the worker once the generation has handed over n tokens, and returns
// each layer's bounds by name: those of a layer whose scanner or range explain then finds
// different, or whose bounds failed, are not used.
func (pf *stepPrefetch) finish(n int) map[string]*prefetchLayer {
	if pf == nil {
		return nil
	}
	close(pf.ch)
	<-pf.done
	out := map[string]*prefetchLayer{}
	for _, l := range pf.layers {
		if l.err == nil && n == len(l.bounds) {
			out[l.name] = l
		}
	}
	return out
}

// stepsFor is the prefetched step bounds for layer name on sc over rg, or nil.
func stepsFor(pre map[string]*prefetchLayer, name string, sc *dualmem.Scanner, rg tokens) []dualmem.StepBounds {
	if l := pre[name]; l != nil && l.sc == sc && l.rg == rg {
		return l.bounds
	}
	return nil
}

package query

import (
	"context"
	"errors"
	"index/suffixarray"
	"log/slog"
	"math"
	"runtime"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/internal/filemem"
	"github.com/spotlight-lm/spotlight/lm"
	"golang.org/x/sync/errgroup"
)

// Engine answers queries against one checkpoint: the model plus every captured layer's
// memory, read in place from the store's segment files. It is safe for concurrent use.
//
// Per layer, Primal and Dual of DualCheck are:
//   - exact layers (out): the chosen token's logit from the model, and
//     W0Term + BiasTerm + Σ contributions;
//   - hidden layers (block{n}.ff1/ff2): y·u with u = ∂logit/∂y from the model, and the same
//     sum (the projection is linear, so this identity is exact, while each contribution is
//     a first-order attribution of the logit). MaxAbsErr is then dualmem.Check's AbsErr over
//     the whole output vector, with the dual rebuilt from memory.
type Engine struct {
	store  *dualmem.Store // for the damage its segment check found (Store.Fault)
	model  *lm.Model
	meta   dualmem.Meta
	layers map[string]*dualmem.Scanner
	table  map[string]lm.Layer // the captured layers' rows of the layer table
	corpus []rune
	text   []byte
	sa     *suffixarray.Index
	runeAt []int32 // byte offset → rune offset in text
	pass   passageIdx
	// Every layer holds the same training tokens in the same order, so the per-token indexes
	// are built once for all of them: passageOf maps a memory token to the passage of its
	// target, byTarget lists, per vocabulary token, the memory tokens trained to predict it,
	// and byPrev, per character, those trained right after it.
	passageOf []int32
	byTarget  targetIndex
	byPrev    prevIndex
	arena     *filemem.Arena // the indexes above, file-backed (filemem); freed by Close
	bg        sync.WaitGroup // the background preparation newEngine starts

	mu     sync.RWMutex // Close waits for requests in flight
	closed bool
}

// NewEngine prepares every captured layer's memory (up to the model's step) for queries,
// builds the suffix array over the corpus and precomputes per-step aggregates. progress, if
// not nil, is called while a layer's segment files are (re)built or, without them, while
// it loads.
func NewEngine(model *lm.Model, store *dualmem.Store, progress func(layer string, done, total int)) (*Engine, error) {
	return newEngine(nil, model, store, progress)
}

// Next is the engine of a later checkpoint of the same store: it reuses the corpus indexes
// and the mapped memory, and of the per-step aggregates recomputes only what depends on the
// new steps or on the final step (the dual form's coefficients).
func (e *Engine) Next(model *lm.Model, store *dualmem.Store) (*Engine, error) {
	return newEngine(e, model, store, nil)
}

func newEngine(prev *Engine, model *lm.Model, store *dualmem.Store, progress func(layer string, done, total int)) (*Engine, error) {
	meta := store.Meta()
	e := &Engine{store: store, model: model, meta: meta, layers: map[string]*dualmem.Scanner{}, table: map[string]lm.Layer{}}
	var before map[string]*dualmem.Scanner
	if prev != nil {
		e.text, e.corpus, e.runeAt, e.sa, e.pass = prev.text, prev.corpus, prev.runeAt, prev.sa, prev.pass
		prev.mu.RLock()
		before = prev.layers
		prev.mu.RUnlock()
	} else {
		e.indexCorpus(store.Corpus())
	}
	mems, err := store.Memory(model.Step, progress)
	if err != nil {
		return nil, err
	}
	e.arena = store.IndexArena()
	for i, spec := range meta.Layers {
		mem := mems[i]
		if e.table[spec.Name], err = model.Cfg.Layer(spec.Name); err != nil {
			_ = mem.Release() // nothing holds them yet
			_ = e.arena.Close()
			return nil, err
		}
		e.layers[spec.Name] = dualmem.NewScannerFrom(before[spec.Name], mem, meta)
		if i == 0 {
			e.passageOf = passageGroups(mem, e.pass.of, e.arena)
			e.byTarget = newTargetIndex(len(mem.Targets), model.Tok.Size(), func(j int) int32 { return mem.Targets[j] }, e.arena)
			e.byPrev = e.newPrevIndex(e.layers[spec.Name], e.arena)
		}
	}
	// Hidden layers' output-vector check needs the dual weights (one pass over the memory),
	// and pruned answers the chunk sums of the aggregates; build them in the background so
	// the first request rarely waits for them.
	// Close waits for them: they read the per-token sums it unmaps.
	for name, sc := range e.layers {
		if !e.table[name].Exact {
			e.bg.Go(sc.Warm)
		}
		e.bg.Go(sc.PrepareSums)
	}
	return e, nil
}

// indexCorpus builds what the engine looks up in the corpus: its characters, the character
// offset of every byte, the suffix array and the passages.
func (e *Engine) indexCorpus(text []byte) {
	e.text = text
	e.corpus = []rune(string(e.text))
	e.runeAt = make([]int32, len(e.text)+1)
	r := int32(0)
	for i := range e.text {
		e.runeAt[i] = r
		if utf8.RuneStart(e.text[i]) {
			r++
		}
		e.runeAt[i] = r - 1
	}
	e.runeAt[len(e.text)] = r
	e.sa = suffixarray.New(e.text)
	e.pass.starts, e.pass.of = passages(e.corpus)
}

// targetIndex lists the memory tokens of each target in memory order:
// tokens[first[t]:first[t+1]], 4 bytes per token and per vocabulary entry.
type targetIndex struct {
	first, tokens []int32
}

// newTargetIndex indexes tokens 0..n-1 by key(j) (in [0, vocab), or none when negative),
// with its arrays from arena. key is called twice per token.
func newTargetIndex(n, vocab int, key func(j int) int32, arena *filemem.Arena) targetIndex {
	x := targetIndex{first: make([]int32, vocab+1)}
	count := 0
	for j := range n {
		if t := key(j); t >= 0 && int(t) < vocab {
			x.first[t+1]++
			count++
		}
	}
	for t := range vocab {
		x.first[t+1] += x.first[t]
	}
	x.tokens = arena.Int32s(count)
	next := append([]int32(nil), x.first[:vocab]...)
	for j := range n {
		if t := key(j); t >= 0 && int(t) < vocab {
			x.tokens[next[t]] = int32(j)
			next[t]++
		}
	}
	return x
}

// of lists the memory tokens trained to predict t.
func (x targetIndex) of(t int32) []int32 {
	if t < 0 || int(t)+1 >= len(x.first) {
		return nil
	}
	return x.tokens[x.first[t]:x.first[t+1]]
}

var errClosed = errors.New("query engine is closed")

// Step is the checkpoint the engine answers for.
func (e *Engine) Step() int { return e.model.Step }

// Close releases the memory once requests in flight are done (the model belongs to the
// caller); later requests fail. The per-token indexes are unmapped, so nothing of the
// engine may be used after it.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.bg.Wait()
	for _, sc := range e.layers {
		if err := sc.Mem.Release(); err != nil {
			slog.Warn("releasing a memory's indexes", "err", err)
		}
		break // the layers share them
	}
	if err := e.arena.Close(); err != nil {
		slog.Warn("releasing the engine's indexes", "err", err)
	}
	e.closed, e.layers = true, nil
	e.passageOf, e.byTarget, e.byPrev = nil, targetIndex{}, prevIndex{}
}

// Scanner exposes a layer's prepared memory (for tests and tools).
func (e *Engine) Scanner(layer string) *dualmem.Scanner {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.layers[layer]
}

func (e *Engine) encode(field, s string) ([]int32, error) {
	ids, err := e.model.Tok.Encode(s)
	if err != nil {
		return nil, &InputError{Field: field, Message: err.Error(), Err: err}
	}
	return ids, nil
}

// Generate continues req.Prompt and explains every generated token.
func (e *Engine) Generate(ctx context.Context, req Request) (*Answer, error) {
	if err := req.Normalize(e.model.Cfg); err != nil {
		return nil, err
	}
	return e.generate(ctx, req)
}

// Plot runs the generation of a plot request; the caller draws the chosen token's timeline.
func (e *Engine) Plot(ctx context.Context, req PlotRequest) (*Answer, error) {
	if err := req.Normalize(e.model.Cfg); err != nil {
		return nil, err
	}
	return e.generate(ctx, req.generation())
}

// generate runs a normalised generate request.
func (e *Engine) generate(ctx context.Context, req Request) (*Answer, error) {
	prompt, err := e.encode("prompt", req.Prompt)
	if err != nil {
		return nil, err
	}
	// Where the answers need only the logits and the layers' inputs, the generation's own
	// forward passes give the probes: the same values, without a second pass over the text.
	// Pruned layers' step bounds are then computed token by token as the generation goes.
	var gen []int32
	var probes []lm.Probe
	var pre map[string]*prefetchLayer
	if e.forwardOnly(req) {
		gen, probes, pre, err = e.generateProbed(req, prompt)
	} else {
		gen, err = e.model.Generate(prompt, req.Tokens, *req.Temperature, req.Seed)
	}
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ans, err := e.explain(ctx, req, generatedContexts(prompt, gen), gen, probes, pre)
	if err != nil {
		return nil, err
	}
	ans.Prompt, ans.Text, ans.Sampling = req.Prompt, e.model.Tok.Decode(gen), req.sampling()
	return ans, nil
}

// generateProbed is the generation whose probes serve the answer, with the step bounds of
// its pruned layers computed as it goes. It holds the engine open: the bounds read the
// memory's indexes, which Close unmaps.
func (e *Engine) generateProbed(req Request, prompt []int32) ([]int32, []lm.Probe, map[string]*prefetchLayer, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, nil, nil, errClosed
	}
	pf := e.prefetchSteps(req)
	var each func(int, int32, lm.Probe)
	if pf != nil {
		each = pf.add
	}
	gen, probes, err := e.model.GenerateProbed(prompt, req.Tokens, *req.Temperature, req.Seed, each)
	return gen, probes, pf.finish(len(gen)), err
}

// generatedContexts is, per generated token, the prompt and the tokens generated before it.
func generatedContexts(prompt, gen []int32) [][]int32 {
	seq := append(append([]int32{}, prompt...), gen...)
	contexts := make([][]int32, len(gen))
	for i := range gen {
		contexts[i] = seq[:len(prompt)+i]
	}
	return contexts
}

// Attribute scores req.Text teacher-forced: for each position i ≥ 1 the context
// text[:i] and the target text[i].
func (e *Engine) Attribute(ctx context.Context, req AttributeRequest) (*Answer, error) {
	return e.AttributeAt(ctx, req, nil)
}

// AttributeAt is Attribute for the given positions of req.Text only (each in
// 1..len(text)−1, in the order given; nil means all of them): callers that need a few
// tokens of a long text pay for those alone.
func (e *Engine) AttributeAt(ctx context.Context, req AttributeRequest, positions []int) (*Answer, error) {
	if err := req.Normalize(e.model.Cfg); err != nil {
		return nil, err
	}
	ids, err := e.encode("text", req.Text)
	if err != nil {
		return nil, err
	}
	if positions == nil {
		for i := 1; i < len(ids); i++ {
			positions = append(positions, i)
		}
	}
	contexts, targets := make([][]int32, len(positions)), make([]int32, len(positions))
	for k, i := range positions {
		if i < 1 || i >= len(ids) {
			return nil, inputErr("text", "position %d outside 1..%d", i, len(ids)-1)
		}
		contexts[k], targets[k] = ids[:i], ids[i]
	}
	opt := Request{TopK: req.TopK, RankBy: req.RankBy, GroupBy: req.GroupBy, Layers: req.Layers, Bins: req.Bins,
		Passages: req.Passages, Steps: req.Steps, Scan: req.Scan}
	ans, err := e.explain(ctx, opt, contexts, targets, nil, nil)
	if err != nil {
		return nil, err
	}
	ans.Text = req.Text
	for k := range ans.Tokens {
		ans.Tokens[k].Index = positions[k]
	}
	return ans, nil
}

// answersPruned reports whether req's answer for sc's layer is pruned: asked for, and the
// layer has the aggregates it needs (else it is a full scan).
func answersPruned(req Request, sc *dualmem.Scanner) bool {
	return req.Scan == ScanPruned && sc.HasAggregates() == nil
}

// forwardOnly reports whether req's answers need of the model only what its forward pass
// gives (logits, the layers' inputs): every layer it asks for is exact, and its ranking
// needs neither a runner-up nor a gradient.
func (e *Engine) forwardOnly(req Request) bool {
	if req.RankBy != RankContribution && req.RankBy != RankAttention {
		return false
	}
	for _, name := range req.Layers {
		if l, ok := e.table[name]; !ok || !l.Exact {
			return false
		}
	}
	return true
}

// explain probes the model at each context (unless probes, one per context, are given) and
// scans every requested layer once for all tokens; req is normalised, and only its
// attribution options are read. pre holds step bounds computed during the generation.
func (e *Engine) explain(ctx context.Context, req Request, contexts [][]int32, targets []int32, probes []lm.Probe, pre map[string]*prefetchLayer) (*Answer, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, errClosed
	}
	var err error
	if probes == nil {
		if probes, err = e.probe(ctx, contexts, targets, probeObjective[req.RankBy]); err != nil {
			return nil, err
		}
	}
	ans := &Answer{Step: e.model.Step, Tokens: make([]TokenAnswer, len(targets))}
	for i, tok := range targets {
		ans.Tokens[i] = TokenAnswer{Index: i, Token: e.model.Tok.DecodeOne(tok),
			Prob:     lm.Probabilities(probes[i].Logits, 1)[tok],
			Layers:   map[string]LayerAnswer{},
			Verbatim: e.verbatim(contexts[i])}
	}
	var sh []*shared // per token: the training tokens that shared its context (every layer has the same); nil until an answer needs them
	for _, name := range req.Layers {
		sc := e.layers[name]
		if sc == nil {
			return nil, inputErr("layers", "layer %q has no memory", name)
		}
		if err := e.store.Fault(name); err != nil {
			return nil, &DamagedError{Layer: name, Err: err}
		}
		from, to, err := tokenRange(sc, req.Steps)
		if err != nil {
			return nil, err
		}
		rg := tokens{from, to}
		answer, pruned := e.fullLayer, answersPruned(req, sc)
		if pruned {
			answer = e.prunedLayer
		}
		// A pruned answer grouped by token uses no member: finding them visits every
		// training token after the context's last character, most of a request's time on a
		// large memory.
		if sh == nil && (!pruned || req.GroupBy == GroupPattern) {
			if sh, err = e.sharedAll(ctx, sc, contexts, targets, rg); err != nil {
				return nil, err
			}
		}
		lq := layerQueries{sc: sc, name: name, rg: rg, contexts: contexts, targets: targets, probes: probes, shared: sh,
			qs: make([]dualmem.Query, len(targets)), objs: make([]objective, len(targets)), steps: stepsFor(pre, name, sc, rg)}
		for i, tok := range targets {
			lq.qs[i], lq.objs[i] = e.query(name, req.RankBy, probes[i], tok)
		}
		las, err := answer(ctx, req, lq)
		if err != nil {
			return nil, err
		}
		for i := range targets {
			ans.Tokens[i].Layers[name] = las[i]
		}
	}
	return ans, nil
}

// layerQueries is one layer's part of a request: its scanner, token range, the tokens'
// contexts, targets, probes and shared-context members, and their scan queries.
type layerQueries struct {
	sc       *dualmem.Scanner
	name     string
	rg       tokens
	contexts [][]int32
	targets  []int32
	probes   []lm.Probe
	shared   []*shared // nil for a pruned answer grouped by token
	qs       []dualmem.Query
	objs     []objective
	steps    []dualmem.StepBounds // per token, from the generation (stepPrefetch); or nil
}

// fullLayer answers every token of one layer from complete scans of its memory in range.
// The pattern members' scores come from the same pass over the keys.
func (e *Engine) fullLayer(ctx context.Context, req Request, lq layerQueries) ([]LayerAnswer, error) {
	sc, qs, from, to := lq.sc, lq.qs, lq.rg.from, lq.rg.to
	members := make([]dualmem.Members, len(qs))
	for i := range qs {
		members[i] = lq.shared[i].members()
	}
	opt := dualmem.ScanOptions{TopK: memberTop(req), From: from, To: to,
		Groups: e.passageOf, NGroups: len(e.pass.starts) - 1, Members: members}
	res, err := sc.Scan(ctx, qs, opt)
	if err != nil {
		return nil, err
	}
	read := sc.RangeRead(from, to)
	// Rarely, more than the spare hits share windows with better ones: scan again with
	// more, the queries that need it alone (as topHits does), keeping the first scan's
	// member classes.
	opt.Members = nil
	for short := shortQueries(sc, req, rankedLists(req, res), indices(len(qs)), opt.TopK, to-from); len(short) > 0; {
		opt.TopK *= 8
		more, err := sc.Scan(ctx, at(qs, short), opt)
		if err != nil {
			return nil, err
		}
		for k, i := range short {
			more[k].Classes = res[i].Classes
			res[i] = more[k]
		}
		read = read.Plus(sc.RangeRead(from, to))
		short = shortQueries(sc, req, rankedLists(req, res), short, opt.TopK, to-from)
	}
	las := make([]LayerAnswer, len(qs))
	err = parallel(ctx, len(qs), func(i int) error {
		r, sh := &res[i], lq.shared[i]
		ranked := r.TopContribution
		if req.RankBy == RankAttention {
			ranked = r.TopAttention
		}
		hits, rescored := distinctWindows(sc, ranked, req.TopK), 0
		if req.GroupBy == GroupPattern {
			var err error
			if hits, rescored, err = patternTop(ctx, sc, qs[i], sh, r.Classes, ranked, req.RankBy == RankAttention, req.TopK); err != nil {
				return err
			}
		}
		la := e.layerAnswer(sc, lq.name, req, qs[i], lq.objs[i], r, lq.probes[i], lq.targets[i], hits)
		la.Patterns = e.patterns(sc, r, sh, r.Classes, e.window(lq.contexts[i]), lq.targets[i], lq.rg)
		var err error
		la.Passages, err = e.topPassages(ctx, sc, qs[i], r, req.Passages, lq.rg)
		rescored += positionTokens(la.ByOffset)
		for _, p := range la.Passages {
			rescored += p.Count
		}
		la.Scan = LayerScan{Mode: ScanFull, ScanStats: read.Plus(sc.TokensRead(rescored))}
		las[i] = la
		return err
	})
	return las, err
}

// positionTokens is how many tokens by_offset scored.
func positionTokens(ps []Position) int {
	n := 0
	for _, p := range ps {
		n += p.Count
	}
	return n
}

// sharedAll finds, for each context, the training tokens that shared its end.
func (e *Engine) sharedAll(ctx context.Context, sc *dualmem.Scanner, contexts [][]int32, targets []int32, rg tokens) ([]*shared, error) {
	out := make([]*shared, len(contexts))
	err := parallel(ctx, len(contexts), func(i int) error {
		var err error
		out[i], err = e.shared(ctx, sc, e.window(contexts[i]), targets[i], rg)
		return err
	})
	return out, err
}

// parallel runs fn(0..n-1) on every core and returns the first error; it stops starting
// new calls once ctx is done or a call failed.
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range n {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(i) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// probeChunk is how many contexts explain probes between checks of its context: a
// fraction of a second of model time.
const probeChunk = 64

// probe runs the model's probe over the contexts in chunks, so a cancelled request stops
// within one chunk.
func (e *Engine) probe(ctx context.Context, contexts [][]int32, targets []int32, obj lm.Objective) ([]lm.Probe, error) {
	out := make([]lm.Probe, 0, len(contexts))
	for lo := 0; lo < len(contexts); lo += probeChunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+probeChunk, len(contexts))
		ps, err := e.model.ProbeFor(contexts[lo:hi], targets[lo:hi], obj)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

// objective is what a layer's contributions add up to for one token.
type objective struct {
	name       string  // "logit", "margin" or "logp"
	runnerUp   int32   // margin: the token with the next-highest logit; else −1
	primal     float64 // its value from the model
	firstOrder bool
}

// probeObjective is the objective each ranking's contributions add up to.
var probeObjective = map[string]lm.Objective{RankContribution: lm.ObjLogit, RankAttention: lm.ObjLogit,
	RankMargin: lm.ObjMargin, RankLogp: lm.ObjLogP}

// query builds the scan query of one token: the layer's input, and the projection that turns
// a training token's value into its contribution to the ranking's objective. For out the
// objectives are linear in the logits, so margin is exact; log p is linearised at the model's
// probabilities (∂log p_t/∂logits = e_t − p). Hidden layers project on the probe's gradient
// of the same objective, ∂objective/∂y, to first order.
func (e *Engine) query(layer, rankBy string, p lm.Probe, tok int32) (dualmem.Query, objective) {
	obj := objective{name: "logit", runnerUp: -1}
	switch rankBy {
	case RankMargin:
		obj.name, obj.runnerUp = "margin", p.RunnerUp
	case RankLogp:
		obj.name, obj.firstOrder = "logp", true
	}
	lp := p.Layers[layer]
	if !e.table[layer].Exact {
		obj.firstOrder = true
		for o, y := range lp.Y {
			obj.primal += float64(y) * float64(lp.DY[o])
		}
		return dualmem.Query{X: lp.X, Token: -1, U: lp.DY}, obj
	}
	logits := p.Logits
	var u []float32
	switch rankBy {
	case RankMargin:
		u = make([]float32, len(logits))
		u[tok], u[p.RunnerUp] = 1, -1
	case RankLogp:
		u = make([]float32, len(logits))
		for c, pc := range lm.Probabilities(logits, 1) {
			u[c] = -float32(pc)
		}
		u[tok]++
	default:
		obj.primal = float64(logits[tok])
		return dualmem.Query{X: lp.X, Token: int(tok)}, obj
	}
	for c, l := range logits {
		obj.primal += float64(u[c]) * float64(l)
	}
	return dualmem.Query{X: lp.X, Token: -1, U: u}, obj
}

// shortQueries are the queries of idx whose K hits (lists[i]) hold fewer than TopK
// distinct training windows while more than K of the n tokens in range are left: those to
// search again with more hits.
func shortQueries(sc *dualmem.Scanner, req Request, lists [][]dualmem.Hit, idx []int, K, n int) []int {
	var out []int
	for _, i := range idx {
		if hits := lists[i]; K < n && len(hits) == K && len(distinctWindows(sc, hits, req.TopK)) < req.TopK {
			out = append(out, i)
		}
	}
	return out
}

// indices is 0, 1, …, n−1: every query of a batch, by index.
func indices(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// at is xs[idx[0]], xs[idx[1]], …: the queries of a batch to search again, or what goes
// with them; nil for nil xs.
func at[T any](xs []T, idx []int) []T {
	if xs == nil {
		return nil
	}
	out := make([]T, len(idx))
	for k, i := range idx {
		out[k] = xs[i]
	}
	return out
}

// rankedLists is each result's top list by the request's ranking.
func rankedLists(req Request, res []dualmem.Result) [][]dualmem.Hit {
	out := make([][]dualmem.Hit, len(res))
	for i := range res {
		out[i] = res[i].TopContribution
		if req.RankBy == RankAttention {
			out[i] = res[i].TopAttention
		}
	}
	return out
}

// tokenRange is the memory's token index range of training steps [steps[0], steps[1]]
// (all of it when steps is empty).
func tokenRange(sc *dualmem.Scanner, steps []int) (from, to int, err error) {
	if len(steps) == 0 {
		return 0, sc.N, nil
	}
	last := len(sc.Mem.Steps)
	if steps[1] > last {
		return 0, 0, inputErr("steps", "[%d, %d] goes past the model's step %d", steps[0], steps[1], last)
	}
	for _, si := range sc.Mem.Steps[:steps[0]-1] {
		from += si.Tokens()
	}
	to = from
	for _, si := range sc.Mem.Steps[steps[0]-1 : steps[1]] {
		to += si.Tokens()
	}
	return from, to, nil
}

// layerAnswer is a token's answer for one layer from a complete scan.
func (e *Engine) layerAnswer(sc *dualmem.Scanner, name string, req Request, q dualmem.Query, obj objective, r *dualmem.Result, p lm.Probe, tok int32, hits []dualmem.Hit) LayerAnswer {
	la := e.hitsAnswer(sc, name, q, obj, p, tok, hits)
	la.W0Term, la.BiasTerm, la.PositiveTotal, la.NegativeTotal = r.W0Term, r.BiasTerm, new(r.Positive), new(r.Negative)
	var topAbs float64
	for _, h := range hits {
		topAbs += math.Abs(h.Contribution)
	}
	la.TopShare = new(0.0)
	if r.AbsTotal > 0 {
		*la.TopShare = topAbs / r.AbsTotal
	}
	la.DualCheck.Dual = r.Total()
	la.DualCheck.AbsErr = math.Abs(la.DualCheck.Primal - la.DualCheck.Dual)
	la.Timeline = timeline(sc, r.StepAlpha, r.StepAbsAlpha, r.StepContribution, req.Bins)
	return la
}

// hitsAnswer is what a token's answer for one layer takes from its top hits alone: the
// objective, the top list, the counterfactual, the primal side of the dual check (and for
// hidden layers its whole-vector error) and by_offset.
func (e *Engine) hitsAnswer(sc *dualmem.Scanner, name string, q dualmem.Query, obj objective, p lm.Probe, tok int32, hits []dualmem.Hit) LayerAnswer {
	exact := e.table[name].Exact
	la := LayerAnswer{FirstOrder: obj.firstOrder || !exact, Objective: obj.name}
	if obj.runnerUp >= 0 {
		la.RunnerUp = e.model.Tok.DecodeOne(obj.runnerUp)
	}
	la.Top = []Entry{}
	for _, h := range hits {
		la.Top = append(la.Top, e.entry(sc, h))
	}
	lp := p.Layers[name]
	la.DualCheck.Primal = obj.primal
	if exact {
		// Removal acts on every logit; the answer is the token's probability after it.
		cf := sc.Counterfactual(p.Logits, dualmem.Query{X: q.X, Token: int(tok)}, hits)
		la.CounterfactualProb = &cf
	} else {
		la.DualCheck.MaxAbsErr = dualmem.Compare(lp.Y, sc.Dual(lp.X)).AbsErr
	}
	la.ByOffset = e.byOffset(sc, q, hits)
	return la
}

// distinctWindows keeps the first k hits of which no two come from the same training window
// (one batch row of one step) or the same corpus position (another epoch of the same text).
func distinctWindows(sc *dualmem.Scanner, hits []dualmem.Hit, k int) []dualmem.Hit {
	type window struct{ step, row int32 }
	rows, offs := map[window]bool{}, map[int64]bool{}
	out := make([]dualmem.Hit, 0, k)
	for _, h := range hits {
		w, off := window{sc.Mem.Step[h.Index], sc.Mem.Rows[h.Index]}, sc.Mem.Offsets[h.Index]
		if rows[w] || offs[off] {
			continue
		}
		rows[w], offs[off] = true, true
		if out = append(out, h); len(out) == k {
			break
		}
	}
	return out
}

func (e *Engine) entry(sc *dualmem.Scanner, h dualmem.Hit) Entry {
	m := sc.Mem
	j := h.Index
	off, pos := m.Offsets[j], int64(m.Pos[j])
	lo := max(0, off-pos-1)
	en := Entry{Index: j, Step: int(m.Step[j]), Row: int(m.Rows[j]), Pos: int(pos), Offset: off,
		Attention: h.Alpha, Contribution: h.Contribution}
	if off >= 0 && off < int64(len(e.corpus)) {
		en.Context, en.Target = string(e.corpus[lo:off]), string(e.corpus[off])
	}
	return en
}

// timeline sums per-step α, |α| (nil: omitted) and contributions into bins of training
// steps.
func timeline(sc *dualmem.Scanner, alpha, absAlpha, contribution []float64, bins int) []Bin {
	cuts := binCuts(len(sc.Mem.Steps), bins)
	out := binSpans(sc, cuts)
	for b := range out {
		if absAlpha != nil {
			out[b].AbsAttention = new(0.0)
		}
		for t := cuts[b]; t < cuts[b+1]; t++ {
			out[b].Attention += alpha[t]
			if absAlpha != nil {
				*out[b].AbsAttention += absAlpha[t]
			}
			out[b].Contribution += contribution[t]
		}
	}
	return out
}

// binCuts are the first step index of each of a timeline's bins over T steps, then T
// (bins at most T, so none is empty).
func binCuts(T, bins int) []int {
	bins = min(bins, T)
	cuts := make([]int, bins+1)
	for b := range cuts {
		cuts[b] = b * T / max(bins, 1)
	}
	return cuts
}

// binSpans are the empty bins of cuts, with their step numbers.
func binSpans(sc *dualmem.Scanner, cuts []int) []Bin {
	steps := sc.Mem.Steps
	out := make([]Bin, len(cuts)-1)
	for b := range out {
		out[b] = Bin{FromStep: steps[cuts[b]].Step, ToStep: steps[cuts[b+1]-1].Step}
	}
	return out
}

// byOffset sums, for each distinct corpus offset among the hits, every token trained on
// it (all epochs), in the hits' order.
func (e *Engine) byOffset(sc *dualmem.Scanner, q dualmem.Query, hits []dualmem.Hit) []Position {
	out := []Position{}
	seen := map[int64]bool{}
	for _, h := range hits {
		off := sc.Mem.Offsets[h.Index]
		if seen[off] {
			continue
		}
		seen[off] = true
		p := Position{Offset: off}
		for _, j := range sc.SameOffset(off) {
			a, c := sc.Score(q, int(j))
			p.Count++
			p.Attention += a
			p.Contribution += c
		}
		out = append(out, p)
	}
	return out
}

// window is the context as the model saw it: its last Ctx tokens, as characters.
func (e *Engine) window(ctx []int32) []rune {
	return []rune(e.model.Tok.Decode(ctx[max(0, len(ctx)-e.model.Cfg.Ctx):]))
}

// verbatim finds the longest suffix of the context (the model's last Ctx tokens) that
// occurs in the corpus.
func (e *Engine) verbatim(ctx []int32) Verbatim {
	runes := e.window(ctx)
	found := func(n int) bool {
		return len(e.sa.Lookup([]byte(string(runes[len(runes)-n:])), 1)) > 0
	}
	lo, hi := 0, len(runes) // found(lo) holds; find the largest
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if found(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	v := Verbatim{Length: lo, Offsets: []int64{}}
	if lo == 0 {
		return v
	}
	v.Text = string(runes[len(runes)-lo:])
	idx := e.sa.Lookup([]byte(v.Text), -1)
	sort.Ints(idx)
	v.Count = len(idx)
	for _, b := range idx[:min(5, len(idx))] {
		v.Offsets = append(v.Offsets, int64(e.runeAt[b]))
	}
	return v
}

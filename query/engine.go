package query

import (
	"context"
	"errors"
	"fmt"
	"index/suffixarray"
	"math"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// Engine answers queries against one checkpoint: the model plus every captured layer's
// memory held in RAM. It is safe for concurrent use.
//
// Per layer, Primal and Dual of DualCheck are:
//   - out: the chosen token's logit from the model, and W0Term + BiasTerm + Σ contributions;
//   - hidden layers (block{n}.ff1/ff2): y·u with u = ∂logit/∂y from the model, and the same
//     sum (the projection is linear, so this identity is exact, while each contribution is
//     a first-order attribution of the logit). MaxAbsErr is then max_o |y_o − dual_o| over
//     the whole output vector, with the dual rebuilt from memory.
type Engine struct {
	model  *lm.Model
	meta   dualmem.Meta
	layers map[string]*dualmem.Scanner
	corpus []rune
	text   []byte
	sa     *suffixarray.Index
	runeAt []int32 // byte offset → rune offset in text

	mu     sync.RWMutex // Close waits for requests in flight
	closed bool
}

// NewEngine loads every captured layer's memory (up to the model's step) into RAM once,
// builds the suffix array over the corpus and precomputes per-step aggregates. progress,
// if not nil, is called while each layer loads.
func NewEngine(model *lm.Model, store *dualmem.Store, progress func(layer string, done, total int)) (*Engine, error) {
	meta := store.Meta()
	e := &Engine{model: model, meta: meta, layers: map[string]*dualmem.Scanner{}}
	e.text = store.Corpus()
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
	for _, spec := range meta.Layers {
		mem, err := store.LoadLayer(spec.Name, func(done, total int) {
			if progress != nil {
				progress(spec.Name, done, total)
			}
		})
		if err != nil {
			return nil, err
		}
		if mem, err = truncate(mem, model.Step); err != nil {
			return nil, err
		}
		e.layers[spec.Name] = dualmem.NewScanner(mem, meta)
	}
	// Hidden layers' output-vector check needs the dual weights (one pass over the memory);
	// build them in the background so the first request rarely waits for them.
	for name, sc := range e.layers {
		if name != "out" {
			go sc.Warm()
		}
	}
	return e, nil
}

// truncate keeps the memory's first steps, those the model at that step was trained on.
func truncate(m *dualmem.LayerMemory, steps int) (*dualmem.LayerMemory, error) {
	if len(m.Steps) < steps {
		return nil, fmt.Errorf("layer %q: memory holds %d steps, the model is at step %d", m.Spec.Name, len(m.Steps), steps)
	}
	if len(m.Steps) == steps {
		return m, nil
	}
	n := 0
	for _, si := range m.Steps[:steps] {
		n += si.Rows * si.Ctx
	}
	c := *m
	din, dout := m.Spec.DIn, m.Spec.DOut
	c.Keys, c.Grads = m.Keys[:n*din], m.Grads[:n*dout]
	c.Step, c.Offsets, c.Targets, c.Rows, c.Pos = m.Step[:n], m.Offsets[:n], m.Targets[:n], m.Rows[:n], m.Pos[:n]
	c.Steps = m.Steps[:steps]
	return &c, nil
}

// Step is the checkpoint the engine answers for.
func (e *Engine) Step() int { return e.model.Step }

// Close releases the memory once requests in flight are done (the model belongs to the
// caller); later requests fail.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed, e.layers = true, nil
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
	gen, err := e.model.Generate(prompt, req.Tokens, req.Temperature, req.Seed)
	if err != nil {
		return nil, err
	}
	seq := append(append([]int32{}, prompt...), gen...)
	contexts := make([][]int32, len(gen))
	for i := range gen {
		contexts[i] = seq[:len(prompt)+i]
	}
	ans, err := e.explain(ctx, options{req.TopK, req.RankBy, req.Layers, req.Bins}, contexts, gen)
	if err != nil {
		return nil, err
	}
	ans.Prompt, ans.Text = req.Prompt, e.model.Tok.Decode(gen)
	return ans, nil
}

// Attribute scores req.Text teacher-forced: for each position i ≥ 1 the context
// text[:i] and the target text[i].
func (e *Engine) Attribute(ctx context.Context, req AttributeRequest) (*Answer, error) {
	if err := req.Normalize(e.model.Cfg); err != nil {
		return nil, err
	}
	ids, err := e.encode("text", req.Text)
	if err != nil {
		return nil, err
	}
	contexts := make([][]int32, len(ids)-1)
	for i := range contexts {
		contexts[i] = ids[:i+1]
	}
	ans, err := e.explain(ctx, options{req.TopK, req.RankBy, req.Layers, req.Bins}, contexts, ids[1:])
	if err != nil {
		return nil, err
	}
	ans.Text = req.Text
	for i := range ans.Tokens {
		ans.Tokens[i].Index = i + 1
	}
	return ans, nil
}

// options are the normalised attribution options every request carries.
type options struct {
	topK   int
	rankBy string
	layers []string
	bins   int
}

// explain probes the model at each context and scans every requested layer once for all
// tokens.
func (e *Engine) explain(ctx context.Context, opt options, contexts [][]int32, targets []int32) (*Answer, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, errors.New("query engine is closed")
	}
	probes, err := e.model.Probe(contexts, targets)
	if err != nil {
		return nil, err
	}
	ans := &Answer{Step: e.model.Step, Tokens: make([]TokenAnswer, len(targets))}
	for i, tok := range targets {
		ans.Tokens[i] = TokenAnswer{Index: i, Token: e.model.Tok.DecodeOne(tok),
			Prob:     lm.Probabilities(probes[i].Logits, 1)[tok],
			Layers:   map[string]LayerAnswer{},
			Verbatim: e.verbatim(contexts[i])}
	}
	for _, name := range opt.layers {
		sc := e.layers[name]
		if sc == nil {
			return nil, inputErr("layers", "layer %q has no memory", name)
		}
		qs := make([]dualmem.Query, len(targets))
		for i, tok := range targets {
			lp := probes[i].Layers[name]
			qs[i] = dualmem.Query{X: lp.X, Token: -1, U: lp.DY}
			if name == "out" {
				qs[i] = dualmem.Query{X: lp.X, Token: int(tok)}
			}
		}
		res, err := sc.Scan(ctx, qs, dualmem.ScanOptions{TopK: opt.topK})
		if err != nil {
			return nil, err
		}
		for i := range targets {
			ans.Tokens[i].Layers[name] = e.layerAnswer(sc, name, opt, qs[i], &res[i], probes[i])
		}
	}
	return ans, nil
}

func (e *Engine) layerAnswer(sc *dualmem.Scanner, name string, opt options, q dualmem.Query, r *dualmem.Result, p lm.Probe) LayerAnswer {
	la := LayerAnswer{FirstOrder: name != "out", W0Term: r.W0Term, BiasTerm: r.BiasTerm,
		PositiveTotal: r.Positive, NegativeTotal: r.Negative}
	hits := r.TopContribution
	if opt.rankBy == RankAttention {
		hits = r.TopAttention
	}
	var topAbs float64
	for _, h := range hits {
		la.Top = append(la.Top, e.entry(sc, h))
		topAbs += math.Abs(h.Contribution)
	}
	if r.AbsTotal > 0 {
		la.TopShare = topAbs / r.AbsTotal
	}
	lp := p.Layers[name]
	if name == "out" {
		la.DualCheck.Primal = float64(p.Logits[q.Token])
		cf := Counterfactual(sc, p.Logits, q, hits)
		la.CounterfactualProb = &cf
	} else {
		for o, y := range lp.Y {
			la.DualCheck.Primal += float64(y) * float64(lp.DY[o])
		}
		for o, d := range sc.Dual(lp.X) {
			la.DualCheck.MaxAbsErr = math.Max(la.DualCheck.MaxAbsErr, math.Abs(float64(lp.Y[o])-d))
		}
	}
	la.DualCheck.Dual = r.Total()
	la.DualCheck.AbsErr = math.Abs(la.DualCheck.Primal - la.DualCheck.Dual)
	la.Timeline = timeline(sc, r, opt.bins)
	la.ByOffset = e.byOffset(sc, q, hits)
	return la
}

// Counterfactual is the probability of q.Token after removing the hits' training tokens
// from the output layer: every logit c loses (s_t·α_j + b_t)·g_j[c] for each hit j, the
// token's weight path (its contribution) and its share of the bias.
func Counterfactual(sc *dualmem.Scanner, logits []float32, q dualmem.Query, hits []dualmem.Hit) float64 {
	l := make([]float64, len(logits))
	for c, v := range logits {
		l[c] = float64(v)
	}
	for _, h := range hits {
		alpha, _ := sc.Score(q, h.Index)
		sc.RemoveToken(l, h.Index, alpha)
	}
	return softmaxAt(l, q.Token)
}

func softmaxAt(l []float64, k int) float64 {
	hi := math.Inf(-1)
	for _, v := range l {
		hi = math.Max(hi, v)
	}
	var sum float64
	for _, v := range l {
		sum += math.Exp(v - hi)
	}
	return math.Exp(l[k]-hi) / sum
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

// timeline sums the per-step results into bins of training steps.
func timeline(sc *dualmem.Scanner, r *dualmem.Result, bins int) []Bin {
	steps := sc.Mem.Steps
	T := len(steps)
	if T == 0 {
		return []Bin{}
	}
	bins = min(bins, T)
	out := make([]Bin, bins)
	for b := range out {
		lo, hi := b*T/bins, (b+1)*T/bins
		out[b] = Bin{FromStep: steps[lo].Step, ToStep: steps[hi-1].Step}
		for t := lo; t < hi; t++ {
			out[b].Attention += r.StepAlpha[t]
			out[b].AbsAttention += r.StepAbsAlpha[t]
			out[b].Contribution += r.StepContribution[t]
		}
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

// verbatim finds the longest suffix of the context (the model's last Ctx tokens) that
// occurs in the corpus.
func (e *Engine) verbatim(ctx []int32) Verbatim {
	ctx = ctx[max(0, len(ctx)-e.model.Cfg.Ctx):]
	runes := []rune(e.model.Tok.Decode(ctx))
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

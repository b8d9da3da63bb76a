package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// method is one attribution method's linear datamodel: pred[m·Q+q] is the sum of its
// per-token scores over the units subset m drops, signed so that higher means a larger
// predicted increase of query q's loss.
type method struct {
	name, layers string
	pred         []float64
	seconds      float64
}

// add credits a step's per-token scores [n][Q] to every subset that drops each token.
func (m *method) add(subs *subsets, Q int, units []int, score []float64) {
	for i, u := range units {
		row := score[i*Q : (i+1)*Q]
		for _, s := range subs.subsetsOf(u) {
			p := m.pred[int(s)*Q:][:Q]
			for q, v := range row {
				p[q] += v
			}
		}
	}
}

// probeSet is the queries read at every layer: inputs X [Q][DIn] and, per objective, the
// gradient of that objective w.r.t. the layer's output [Q][DOut].
type probeSet struct {
	X  map[string][]float32
	DY map[lm.Objective]map[string][]float32
}

func probeAll(tr *lm.Trainer, contexts [][]int32, targets []int32, objs ...lm.Objective) (*probeSet, error) {
	ps := &probeSet{X: map[string][]float32{}, DY: map[lm.Objective]map[string][]float32{}}
	for _, obj := range objs {
		pr, err := tr.ProbeFor(contexts, targets, obj)
		if err != nil {
			return nil, err
		}
		ps.DY[obj] = map[string][]float32{}
		for _, p := range pr {
			for name, l := range p.Layers {
				if obj == objs[0] {
					ps.X[name] = append(ps.X[name], l.X...)
				}
				ps.DY[obj][name] = append(ps.DY[obj][name], l.DY...)
			}
		}
	}
	return ps, nil
}

// gemmT returns A·Bᵀ for row-major A [n][k] and B [m][k] into out [n][m].
func gemmT(a []float32, n int, b []float32, m, k int, out []float32) {
	blas32.Gemm(blas.NoTrans, blas.Trans, 1,
		blas32.General{Rows: n, Cols: k, Stride: k, Data: a},
		blas32.General{Rows: m, Cols: k, Stride: k, Data: b},
		0, blas32.General{Rows: n, Cols: m, Stride: m, Data: out})
}

// dual adds w·α∘P to out, where α = keys·Xᵀ and P = grads·Uᵀ: each token's dual-form
// contribution, (k_i·x_q)(g_i·u_q), the per-token gradient inner product of a linear layer.
func dual(alpha []float32, grads []float32, n, dout int, U []float32, Q int, w float64, out []float64) {
	proj := make([]float32, n*Q)
	gemmT(grads, n, U, Q, dout, proj)
	for i, a := range alpha {
		out[i] += w * float64(a) * float64(proj[i])
	}
}

// layerSet names a set of layers in the table: "out" or every captured layer.
func layerSet(cfg lm.Config, all bool) []string {
	if !all {
		return []string{lm.OutLayer}
	}
	return cfg.LayerNames()
}

// scoreAll scores every training token for every query with every method and returns the
// methods' subset predictions. It leaves base's trainer at the final weights.
func scoreAll(ctx context.Context, base *run, opts LDSOptions, contexts [][]int32, targets []int32, subs *subsets,
	unitOf func(int, int, *lm.Batch) int, rep *LDSReport) ([]*method, error) {
	tr, cfg, Q, M := base.tr, base.tr.Cfg, opts.Queries, opts.Subsets
	T := cfg.Steps
	if err := tr.Restore(base.snaps[T]); err != nil {
		return nil, err
	}
	final, err := probeAll(tr, contexts, targets, lm.ObjLogP, lm.ObjLogit, lm.ObjMargin)
	if err != nil {
		return nil, err
	}
	refLoss, err := queryLoss(tr, contexts, targets)
	if err != nil {
		return nil, err
	}
	newMethod := func(name string, all bool) *method {
		return &method{name: name, layers: strings.Join(layerSet(cfg, all), ","), pred: make([]float64, M*Q)}
	}
	type spot struct {
		m    *method
		obj  lm.Objective
		from int // first step counted
	}
	var spots []spot
	for _, all := range []bool{false, true} {
		for _, o := range []struct {
			name string
			obj  lm.Objective
		}{{"spotlight logit", lm.ObjLogit}, {"spotlight margin", lm.ObjMargin}, {"spotlight log p", lm.ObjLogP}} {
			if all && o.obj == lm.ObjLogit {
				continue // the logit's hidden-layer gradient ranks like the margin's; keep the table short
			}
			spots = append(spots, spot{newMethod(o.name, all), o.obj, 1})
		}
	}
	// The memory's counterfactual keeps the rest of training fixed, so it credits early tokens
	// with effects that later steps largely undo in a retrain; counting only the most recent
	// steps is the simplest correction (a heuristic window over the same exact scores).
	for _, w := range []int{2, 4, 10, 20, 50} {
		if T/w < 2 {
			continue
		}
		m := newMethod(fmt.Sprintf("spotlight log p, last 1/%d of steps", w), false)
		spots = append(spots, spot{m, lm.ObjLogP, T - T/w + 1})
	}
	bm25, ngram, random := newMethod("bm25 (same target)", false), newMethod("n-gram suffix (same target)", false),
		newMethod("random", false)
	bm25.layers, ngram.layers, random.layers = "context", "context", "-"
	corpus := tr.Tok.EncodeCorpus(opts.Corpus)
	lex := newLexical(corpus, int(float64(len(corpus))*(1-lm.HeldOutFrac)), cfg.Ctx, contexts, targets)
	rng := rand.New(rand.NewPCG(opts.Seed, 0x7a4d))
	form := dualmem.NewDualForm(base.infos, cfg.Optimizer())

	n := cfg.Batch * cfg.Ctx
	units := make([]int, n)
	score := make([]float64, n*Q)
	alpha := make([]float32, n*Q)
	timed := func(m *method, f func()) {
		t := time.Now()
		f()
		m.seconds += time.Since(t).Seconds()
	}
	// The replay reruns the original training (it must reproduce it exactly) and hands each
	// step's captured keys and gradients, the dual memory's records, to Spotlight's scores.
	err = replay(ctx, tr, base.snaps, 1, nil, func(step int, b *lm.Batch, st *lm.Step) {
		for i := range units {
			units[i] = unitOf(step, i, b)
		}
		sw := form.SW[step-1]
		for _, sp := range spots {
			if step < sp.from {
				continue
			}
			timed(sp.m, func() {
				spotlightScores(cfg, st, final, sp.obj, strings.Split(sp.m.layers, ","), sw, alpha, score)
				sp.m.add(subs, Q, units, score)
			})
		}
		timed(bm25, func() { lex.bm25(b, score); bm25.add(subs, Q, units, score) })
		timed(ngram, func() { lex.suffix(b, score); ngram.add(subs, Q, units, score) })
		timed(random, func() {
			for i := range score {
				score[i] = rng.NormFloat64()
			}
			random.add(subs, Q, units, score)
		})
	})
	if err != nil {
		return nil, err
	}
	again, err := queryLoss(tr, contexts, targets)
	if err != nil {
		return nil, err
	}
	var repro float64
	for q := range again {
		repro = math.Max(repro, math.Abs(again[q]-refLoss[q]))
	}
	rep.ReproduceMaxAbsDLoss = Num(repro)
	opts.Log("replay with nothing dropped: max |Δloss| = %.3g over %d queries", repro, Q)

	grads, err := gradientMethods(ctx, base, contexts, targets, subs, unitOf, newMethod, opts)
	if err != nil {
		return nil, err
	}
	var out []*method
	for _, sp := range spots {
		out = append(out, sp.m)
	}
	out = append(out, grads...)
	if opts.Influence {
		m, err := influenceMethod(ctx, base, contexts, targets, subs, unitOf, newMethod("influence (exact metagradient)", false), opts.Log)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	out = append(out, bm25, ngram, random)
	return out, tr.Restore(base.snaps[T])
}

// spotlightScores sets score [n][Q] to each token's contribution, in the dual memory, to
// objective obj of each query, summed over layers: α·s_t·(g·∂obj/∂y), exact for the logit
// at `out`. sw is the step's dual-form coefficient s_t; alpha is scratch [n][Q].
func spotlightScores(cfg lm.Config, st *lm.Step, ps *probeSet, obj lm.Objective, layers []string, sw float64,
	alpha []float32, score []float64) {
	n, Q := st.Tokens(), len(score)/st.Tokens()
	clear(score)
	for _, name := range layers {
		l, _ := cfg.Layer(name)
		ls := st.Layers[name]
		gemmT(ls.Keys, n, ps.X[name], Q, l.DIn, alpha)
		dual(alpha, ls.Grads, n, l.DOut, ps.DY[obj][name], Q, sw, score)
	}
}

// gradientMethods are the field's gradient baselines: the per-token gradient inner product
// ⟨∇θ L_q, ∇θ L_j⟩ at the final weights (grad-dot) and summed over evenly spaced checkpoints
// weighted by their learning rate (TracIn-CP), over a set of linear layers and over all
// parameters. For the linear layers a token's gradient at a checkpoint is read by restoring
// it and running the token's batch through the training step, whose captured keys and output
// gradients give (g_q·g_j)(x_q·x_j); over all parameters lm.Trainer.GradDot gives the inner
// products directly, one mask-derivative backward per batch and query.
func gradientMethods(ctx context.Context, base *run, contexts [][]int32, targets []int32, subs *subsets,
	unitOf func(int, int, *lm.Batch) int, newMethod func(string, bool) *method, opts LDSOptions) ([]*method, error) {
	tr, cfg, Q := base.tr, base.tr.Cfg, opts.Queries
	T := cfg.Steps
	var ckpts []int
	for s := range base.snaps {
		if s > 0 {
			ckpts = append(ckpts, s)
		}
	}
	var out []*method
	gd := map[bool]*method{false: newMethod("grad-dot", false), true: newMethod("grad-dot", true)}
	tc := map[bool]*method{false: newMethod("tracin-cp", false), true: newMethod("tracin-cp", true)}
	gdAll, tcAll := newMethod("grad-dot", false), newMethod("tracin-cp", false)
	gdAll.layers, tcAll.layers = allParams, allParams
	steps := make([]int, T)
	for i := range steps {
		steps[i] = i + 1
	}
	n := cfg.Batch * cfg.Ctx
	units := make([]int, n)
	score := make([]float64, n*Q)
	alpha := make([]float32, n*Q)
	sched := cfg.Optimizer().Schedule
	for _, c := range ckpts {
		t0 := time.Now()
		if err := tr.Restore(base.snaps[c]); err != nil {
			return nil, err
		}
		ps, err := probeAll(tr, contexts, targets, lm.ObjLogP)
		if err != nil {
			return nil, err
		}
		lr := sched.At(c)
		for step := 1; step <= T; step++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := tr.Restore(base.snaps[c]); err != nil {
				return nil, err
			}
			b := tr.BatchAt(step)
			st, err := tr.TrainStep(b)
			if err != nil {
				return nil, err
			}
			for i := range units {
				units[i] = unitOf(step, i, &b)
			}
			for _, all := range []bool{false, true} {
				clear(score)
				for _, name := range layerSet(cfg, all) {
					l, _ := cfg.Layer(name)
					ls := st.Layers[name]
					gemmT(ls.Keys, n, ps.X[name], Q, l.DIn, alpha)
					// ∇L_q = −∂log p/∂y; removing token j undoes a step along −∇L_j.
					dual(alpha, ls.Grads, n, l.DOut, ps.DY[lm.ObjLogP][name], Q, -1, score)
				}
				if c == T {
					gd[all].add(subs, Q, units, score)
				}
				tc[all].add(subs, Q, units, scaled(score, lr))
			}
		}
		// One pass serves both layer sets; each method is charged the passes it needs.
		sec := time.Since(t0).Seconds()
		for _, all := range []bool{false, true} {
			tc[all].seconds += sec
			if c == T {
				gd[all].seconds += sec
			}
		}
		opts.Log("gradient pass at checkpoint %d: %.0fs", c, sec)
		if opts.SkipAllParams {
			continue
		}

		t0 = time.Now()
		res, err := tr.GradDot(ctx, contexts, targets, base.snaps[c], steps, lm.GradDotOptions{QueryBatch: gradDotQueries})
		if err != nil {
			return nil, err
		}
		for step := 1; step <= T; step++ {
			b := tr.BatchAt(step)
			for i := range units {
				units[i] = unitOf(step, i, &b)
				for q := range Q {
					score[i*Q+q] = res.Scores[q][(step-1)*n+i]
				}
			}
			if c == T {
				gdAll.add(subs, Q, units, score)
			}
			tcAll.add(subs, Q, units, scaled(score, lr))
		}
		sec = time.Since(t0).Seconds()
		if tcAll.seconds += sec; c == T {
			gdAll.seconds += sec
		}
		opts.Log("all-parameter gradient pass at checkpoint %d: %.0fs", c, sec)
	}
	out = append(out, gd[false], gd[true], tc[false], tc[true])
	if !opts.SkipAllParams {
		out = append(out, gdAll, tcAll)
	}
	return out, nil
}

// allParams is the layers column of the methods that differentiate every parameter.
const allParams = "all parameters"

// gradDotQueries are the queries lm.Trainer.GradDot differentiates in one pass (measured at
// d = 16, 20 queries: 10 a pass 0.21 s a batch, 4 a pass 0.35 s, 20 a pass 0.28 s).
const gradDotQueries = 10

// scaled multiplies s by f in place and returns it.
func scaled(s []float64, f float64) []float64 {
	for i := range s {
		s[i] *= f
	}
	return s
}

// influenceMethod scores every training token by its exact influence through the whole run
// (the derivative of the query's loss w.r.t. the token's loss weight, replayed backwards
// through every recorded step). Dropping a token moves its weight from 1 to 0, so its
// predicted loss change is minus that derivative.
func influenceMethod(ctx context.Context, base *run, contexts [][]int32, targets []int32, subs *subsets,
	unitOf func(int, int, *lm.Batch) int, m *method, log func(string, ...any)) (*method, error) {
	start := time.Now()
	tr, cfg := base.tr, base.tr.Cfg
	tenth := -1
	res, err := tr.InfluenceRun(ctx, contexts, targets, base.snaps, lm.InfluenceOptions{Progress: func(done, total int) {
		if t := 10 * done / total; t > tenth {
			tenth = t
			log("influence: %d of %d steps replayed or reversed (%.0fs)", done, total, time.Since(start).Seconds())
		}
	}})
	if err != nil {
		return nil, err
	}
	scores := res.Scores
	m.layers = allParams
	Q, n := len(contexts), cfg.Batch*cfg.Ctx
	units, score := make([]int, n), make([]float64, n*Q)
	for step := 1; step <= cfg.Steps; step++ {
		b := tr.BatchAt(step)
		for i := range units {
			units[i] = unitOf(step, i, &b)
			for q := range Q {
				score[i*Q+q] = -scores[q][(step-1)*n+i]
			}
		}
		m.add(subs, Q, units, score)
	}
	m.seconds = time.Since(start).Seconds()
	return m, nil
}

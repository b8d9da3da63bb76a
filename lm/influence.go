package lm

// Exact influence through the recorded run (the metagradient): the derivative of a query's
// loss after the run with respect to every training token's loss weight, through every SGD
// step with its momentum, weight decay, clipping and learning-rate schedule.
//
// Step t (1-based) maps the state (W_t, buf_{t−1}) to (W_{t+1}, buf_t); ε are the loss
// weights of its B·Ctx tokens (Batch.Mask, all 1 in the recorded run):
//
//	g_t(W, ε) = ∇_W L_t(W, ε),   L_t = Σ_j ε_j·nll_j(W) / (B·Ctx)
//	c_t       = min(1, C/(‖g_t‖+1e-6))          (1 when clipping is off)
//	buf_t     = μ·buf_{t−1} + c_t·g_t + λ⊙W_t   (λ per parameter class)
//	W_{t+1}   = W_t − η_t·buf_t
//
// Φ = L_query(W_{T+1}) = −log p(target | context). Let a_W = ∂Φ/∂W_{t+1} and a_buf = ∂Φ/∂buf_t
// (after the last step a_W = ∇L_query(W_{T+1}) and a_buf = 0). buf_t reaches Φ directly and
// through W_{t+1}, so its total adjoint is
//
//	u_t = a_buf − η_t·a_W
//
// and with f_t(W, ε) = ⟨u_t, c_t(W, ε)·g_t(W, ε)⟩, u_t held fixed, the adjoints before step t
// and the scores of its tokens are
//
//	∂Φ/∂buf_{t−1} = μ·u_t
//	∂Φ/∂W_t       = a_W + λ⊙u_t + ∂f_t/∂W
//	∂Φ/∂ε_{t,j}   = ∂f_t/∂ε_j
//
// Written out, with J = ∂g_t/∂(W or ε) (the Hessian H_t for W; ∇_W nll_j/(B·Ctx) for ε_j),
// ∂f_t = Jᵀ·(c_t·u_t) when c_t = 1, and when the clip is active (c_t = C/(‖g‖+1e-6) < 1)
//
//	∂f_t = Jᵀ·(c_t·u_t − (c_t²/C)·(⟨u_t, g_t⟩/‖g_t‖)·g_t)
//
// so the clip scale's own dependence on W and ε matters. The adjoint graph gets both parts
// exactly by differentiating f_t, built on the graph of the first-order gradient, w.r.t. the
// weights and the mask input: one second backward pass (reverse over reverse) per query and
// step, sharing the forward and first backward between the queries of a batch. Derivatives
// are those of the piecewise-smooth graph (ReLU and the clip's min taken on their active side).
//
// The weights W_t come from the snapshots: the run is cut into segments at the snapshot
// steps and the reverse pass walks them from the last, replaying each forward from its
// snapshot and keeping its weights (one copy per step of the segment). Memory is the longest
// segment's weights plus two adjoints per query; the extra compute is one forward replay of the
// run, less one step per snapshot. With a snapshot at every step nothing is replayed.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// InfluenceOptions tunes Trainer.InfluenceRun; the zero value is float32, 4 queries a pass.
type InfluenceOptions struct {
	Float64    bool // replay and differentiate in float64 (from the float32 snapshots)
	QueryBatch int  // queries carried through one reverse pass; default 4
	// Progress (may be nil) is called after each step replayed forward and each step
	// reversed: done of total, over all query batches.
	Progress func(done, total int)
}

// InfluenceResult is the influence of every token of a run on each query.
type InfluenceResult struct {
	From, To int // the run is steps From+1 … To
	// Scores[q][(s−From−1)·Batch·Ctx + row·Ctx + pos] is ∂L_q/∂ε of the token at (row, pos)
	// of step s's batch (BatchAt(s)): L_q = −log p(targets[q] | queries[q]) after step To and
	// ε that token's loss weight. Positive: weighting the token up raises the query's loss.
	Scores    [][]float64
	QueryLoss []float64 // L_q after the replayed run
	Replayed  int       // forward steps replayed, over all query batches
	MaxKept   int       // the most weight states held at once (the longest segment, plus one)
}

// Influence is InfluenceRun with the default options, returning the scores alone:
// [query][training token in step-major order], as InfluenceResult.Scores.
func (t *Trainer) Influence(ctx context.Context, queries [][]int32, targets []int32, snaps map[int][]byte) ([][]float64, error) {
	r, err := t.InfluenceRun(ctx, queries, targets, snaps, InfluenceOptions{})
	if err != nil {
		return nil, err
	}
	return r.Scores, nil
}

// InfluenceRun computes the exact influence of every training token of steps From+1 … To on
// each query (the last Ctx tokens of queries[q] predicting targets[q]), where From and To are
// the first and last steps of snaps (checkpoints of this trainer's run, keyed by the step
// they were taken after, as Checkpoint writes them). The trainer's own state is not touched.
func (t *Trainer) InfluenceRun(ctx context.Context, queries [][]int32, targets []int32, snaps map[int][]byte,
	opts InfluenceOptions) (*InfluenceResult, error) {
	keys, err := t.checkInfluence(queries, targets, snaps)
	if err != nil {
		return nil, err
	}
	q := cmp.Or(opts.QueryBatch, 4)
	if q <= 0 {
		return nil, fmt.Errorf("influence: query batch %d, want > 0", opts.QueryBatch)
	}
	q = min(q, len(queries))
	dtype := dtypes.Float32
	if opts.Float64 {
		dtype = dtypes.Float64
	}
	ex, err := newInfluenceExecs(t.Cfg, dtype, q)
	if err != nil {
		return nil, err
	}
	defer ex.finalize()
	res := &InfluenceResult{From: keys[0], To: keys[len(keys)-1]}
	steps := res.To - res.From
	// Each batch replays every segment forward from its snapshot (the last one to the end),
	// then reverses every step.
	forward := steps - (len(keys) - 1) + 1
	total, done := (len(queries)+q-1)/q*(forward+steps), 0
	report := func() {
		if done++; opts.Progress != nil {
			opts.Progress(done, total)
		}
	}
	for lo := 0; lo < len(queries); lo += q {
		hi := min(lo+q, len(queries))
		if err := t.influenceBatch(ctx, ex, queries[lo:hi], targets[lo:hi], snaps, keys, res, report); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// checkInfluence validates the queries and snapshots and returns the snapshot steps, sorted.
func (t *Trainer) checkInfluence(queries [][]int32, targets []int32, snaps map[int][]byte) ([]int, error) {
	if err := t.checkQueries("influence", queries, targets); err != nil {
		return nil, err
	}
	if len(snaps) < 2 {
		return nil, fmt.Errorf("influence: %d snapshots, need the run's first and last at least", len(snaps))
	}
	keys := make([]int, 0, len(snaps))
	for step, ck := range snaps {
		st, err := t.checkSnapshot(fmt.Sprintf("influence: snapshot %d", step), ck)
		if err != nil {
			return nil, err
		}
		if st.Step != step {
			return nil, fmt.Errorf("influence: snapshot keyed %d was taken after step %d", step, st.Step)
		}
		keys = append(keys, step)
	}
	slices.Sort(keys)
	return keys, nil
}

// checkQueries validates queries and their targets for this trainer's vocabulary; errors
// start with what.
func (t *Trainer) checkQueries(what string, queries [][]int32, targets []int32) error {
	if len(queries) == 0 || len(queries) != len(targets) {
		return fmt.Errorf("%s: %d queries, %d targets (want the same, at least one)", what, len(queries), len(targets))
	}
	vocab := int32(t.Cfg.Vocab)
	for i, qu := range queries {
		if len(qu) == 0 {
			return fmt.Errorf("%s: query %d is empty", what, i)
		}
		if slices.ContainsFunc(qu, func(x int32) bool { return x < 0 || x >= vocab }) || targets[i] < 0 || targets[i] >= vocab {
			return fmt.Errorf("%s: query %d has a token outside the vocabulary [0, %d)", what, i, vocab)
		}
	}
	return nil
}

// checkSnapshot decodes a checkpoint of this trainer's run; what names it in errors.
func (t *Trainer) checkSnapshot(what string, ck []byte) (*State, error) {
	cfg, _, st, err := decodeCheckpoint(ck)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	want, _ := json.Marshal(t.Cfg)
	if got, _ := json.Marshal(cfg); string(got) != string(want) {
		return nil, fmt.Errorf("%s is from another run (config %s, want %s)", what, got, want)
	}
	return st, nil
}

// influenceBatch runs the reverse pass for up to ex.queries queries and appends their scores.
func (t *Trainer) influenceBatch(ctx context.Context, ex *influenceExecs, queries [][]int32, targets []int32,
	snaps map[int][]byte, keys []int, res *InfluenceResult, report func()) error {
	c, n := t.Cfg, len(queries)
	perStep := c.Batch * c.Ctx
	scores := make([][]float64, n)
	for i := range scores {
		scores[i] = make([]float64, (res.To-res.From)*perStep)
	}
	var aW, aBuf []*tensors.Tensor // Q×P each, the adjoints after the step being reversed
	defer func() { freeAll(aW, aBuf) }()
	for seg := len(keys) - 2; seg >= 0; seg-- {
		a, b := keys[seg], keys[seg+1]
		last := seg == len(keys)-2
		ws, err := t.replaySegment(ctx, ex, snaps[a], a, b, last, report)
		if err != nil {
			return err
		}
		res.Replayed += len(ws) - 1
		res.MaxKept = max(res.MaxKept, len(ws))
		if last { // ws ends with W_{To+1}, the final weights
			final := ws[len(ws)-1]
			ws = ws[:len(ws)-1]
			losses, grads, err := ex.queryGrads(final, queries, targets)
			freeAll(final)
			if err != nil {
				freeAll(ws...)
				return err
			}
			res.QueryLoss = append(res.QueryLoss, losses...)
			aW, aBuf = grads, ex.zerosQ()
		}
		for s := b; s > a; s-- { // ws[s−a−1] = W_s
			if err := ctx.Err(); err != nil {
				freeAll(ws...)
				return err
			}
			var sc [][]float64
			aW, aBuf, sc, err = t.adjointStep(ex, ws[s-a-1], aW, aBuf, s)
			freeAll(ws[s-a-1])
			if err != nil {
				freeAll(ws[:s-a-1]...)
				return err
			}
			for i := range n {
				copy(scores[i][(s-res.From-1)*perStep:], sc[i])
			}
			report()
		}
	}
	res.Scores = append(res.Scores, scores...)
	return nil
}

// replaySegment returns W_{a+1} … W_b (and W_{b+1} too when last) by replaying steps a+1 …
// from snapshot a in ex's dtype.
func (t *Trainer) replaySegment(ctx context.Context, ex *influenceExecs, snap []byte, a, b int, last bool,
	report func()) ([][]*tensors.Tensor, error) {
	_, _, st, err := decodeCheckpoint(snap)
	if err != nil {
		return nil, err
	}
	params, bufs := ex.toDType(st.Params), ex.toDType(st.Bufs)
	ws := [][]*tensors.Tensor{params}
	end := b - 1
	if last {
		end = b
	}
	fail := func(err error) ([][]*tensors.Tensor, error) {
		freeAll(bufs)
		freeAll(ws...)
		return nil, err
	}
	for s := a + 1; s <= end; s++ {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		batch := t.BatchAt(s)
		p := len(ex.specs)
		outs, err := ex.step.Exec(args(append(append([]*tensors.Tensor{}, params...), bufs...), t.batchArgs(ex, batch, s)...)...)
		if err != nil {
			return fail(fmt.Errorf("influence replay step %d: %w", s, err))
		}
		freeAll(bufs)
		params, bufs = outs[:p], outs[p:]
		ws = append(ws, params)
		report()
	}
	freeAll(bufs)
	return ws, nil
}

// batchArgs are a step's tokens, targets, loss weights and learning rate for ex's graphs.
func (t *Trainer) batchArgs(ex *influenceExecs, b Batch, step int) []any {
	c := t.Cfg
	m := make([]float64, len(b.Mask))
	for i, x := range b.Mask {
		m[i] = float64(x)
	}
	return []any{
		tensors.FromFlatDataAndDimensions(b.Tokens, c.Batch, c.Ctx),
		tensors.FromFlatDataAndDimensions(b.Targets, c.Batch, c.Ctx),
		ex.mask(m),
		ex.scalar(float64(float32(ex.opt.Schedule.At(step)))), // the rate the float32 run used
	}
}

// adjointStep reverses step s at weights w: the adjoints before it and the scores of its
// tokens, per query. The adjoints given are freed.
func (t *Trainer) adjointStep(ex *influenceExecs, w, aW, aBuf []*tensors.Tensor, s int) (
	newW, newBuf []*tensors.Tensor, scores [][]float64, err error) {
	in := slices.Concat(w, aW, aBuf)
	outs, err := ex.adjoint.Exec(args(in, t.batchArgs(ex, t.BatchAt(s), s)...)...)
	freeAll(aW, aBuf)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("influence adjoint step %d: %w", s, err)
	}
	P, Q := len(ex.specs), ex.queries
	if len(outs) != 2*Q*P+Q {
		freeAll(outs)
		return nil, nil, nil, fmt.Errorf("influence adjoint step %d: %d outputs, want %d", s, len(outs), 2*Q*P+Q)
	}
	for _, sc := range outs[2*Q*P:] {
		scores = append(scores, float64s(sc))
	}
	return outs[:Q*P], outs[Q*P : 2*Q*P], scores, nil
}

// queryGrads evaluates the queries at weights w: their losses and the gradients that start the
// reverse pass (Q×P; rows past len(queries) repeat the last query and are ignored).
func (ex *influenceExecs) queryGrads(w []*tensors.Tensor, queries [][]int32, targets []int32) ([]float64, []*tensors.Tensor, error) {
	c, Q := ex.cfg, ex.queries
	tok := make([]int32, Q*c.Ctx)
	pos, tgt := make([]int32, Q), make([]int32, Q)
	for i := range Q {
		j := min(i, len(queries)-1)
		qu := queries[j][max(0, len(queries[j])-c.Ctx):]
		copy(tok[i*c.Ctx:], qu)
		pos[i], tgt[i] = int32(len(qu)-1), targets[j]
	}
	outs, err := ex.query.Exec(args(w,
		tensors.FromFlatDataAndDimensions(tok, Q, c.Ctx),
		tensors.FromFlatDataAndDimensions(pos, Q),
		tensors.FromFlatDataAndDimensions(tgt, Q))...)
	if err != nil {
		return nil, nil, fmt.Errorf("influence query: %w", err)
	}
	if len(outs) != 1+Q*len(ex.specs) {
		freeAll(outs)
		return nil, nil, errors.New("influence query: wrong number of outputs")
	}
	return float64s(outs[0])[:len(queries)], outs[1:], nil
}

// zerosQ is a zero adjoint for each query.
func (ex *influenceExecs) zerosQ() []*tensors.Tensor {
	var out []*tensors.Tensor
	for range ex.queries {
		out = append(out, ex.zeros()...)
	}
	return out
}

// freeAll frees tensors now rather than at the next garbage collection.
func freeAll(groups ...[]*tensors.Tensor) {
	for _, g := range groups {
		for _, x := range g {
			if x != nil {
				x.FinalizeAll()
			}
		}
	}
}

package lm

// Per-token gradient inner products over every parameter, ⟨∇θ L_q, ∇θ ℓ_j⟩, without forming
// any per-token gradient. With the training step's masked loss L(θ, m) = Σ_j m_j·nll_j(θ)/(B·Ctx),
//
//	f(m) = ⟨λ, ∇θ L(θ, m)⟩ = Σ_j m_j·⟨λ, ∇θ nll_j(θ)⟩/(B·Ctx)
//
// is linear in the mask m, so ∂f/∂m_j = ⟨λ, ∇θ ℓ_j⟩ with ℓ_j = nll_j/(B·Ctx), the token's share
// of the step's mean loss. One backward of f w.r.t. m, built on the graph of the first
// gradient (reverse over reverse, as the influence adjoint), gives it for every token of the
// batch at once; λ = ∇θ L_q, the query's gradient. The forward and first backward are shared
// by the queries of a pass.

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// GradDotOptions tunes Trainer.GradDot; the zero value is float32, 4 queries a pass.
type GradDotOptions struct {
	Float64    bool // evaluate in float64 (from the float32 snapshot)
	QueryBatch int  // queries differentiated in one pass; default 4
}

// GradDotResult is every token's gradient inner product with each query at one checkpoint.
type GradDotResult struct {
	Step  int   // the weights are those after this step (the snapshot's)
	Steps []int // the batches scored, in the order asked
	// Scores[q][k·Batch·Ctx + row·Ctx + pos] is ⟨∇θ L_q, ∇θ ℓ_j⟩ over every parameter for the
	// token j at (row, pos) of BatchAt(Steps[k]), where L_q = −log p(targets[q] | queries[q])
	// and ℓ_j = nll_j/(Batch·Ctx), j's share of its step's mean loss. Positive: a step on j
	// lowers the query's loss, so dropping j raises it.
	Scores    [][]float64
	QueryLoss []float64 // L_q at the snapshot's weights
}

// GradDot computes, at the weights of snapshot snap (a checkpoint of this trainer's run), the
// inner product over all parameters of each query's loss gradient (the last Ctx tokens of
// queries[q] predicting targets[q]) with the gradient of every training token of the given
// steps' batches. It costs one forward, one backward and one backward per query for each
// step's batch; the trainer's own state is not touched.
func (t *Trainer) GradDot(ctx context.Context, queries [][]int32, targets []int32, snap []byte, steps []int,
	opts GradDotOptions) (*GradDotResult, error) {
	if err := t.checkQueries("grad-dot", queries, targets); err != nil {
		return nil, err
	}
	st, err := t.checkSnapshot("grad-dot: snapshot", snap)
	if err != nil {
		return nil, err
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("grad-dot: no steps to score")
	}
	if i := slices.IndexFunc(steps, func(s int) bool { return s < 1 || s > t.Cfg.Steps }); i >= 0 {
		return nil, fmt.Errorf("grad-dot: step %d outside the run's 1 … %d", steps[i], t.Cfg.Steps)
	}
	q := cmp.Or(opts.QueryBatch, 4)
	if q <= 0 {
		return nil, fmt.Errorf("grad-dot: query batch %d, want > 0", opts.QueryBatch)
	}
	q = min(q, len(queries))
	dtype := dtypes.Float32
	if opts.Float64 {
		dtype = dtypes.Float64
	}
	ex, err := newGradDotExecs(t.Cfg, dtype, q)
	if err != nil {
		return nil, err
	}
	defer ex.finalize()
	params := ex.toDType(st.Params)
	defer freeAll(params)
	n := t.Cfg.Batch * t.Cfg.Ctx
	res := &GradDotResult{Step: st.Step, Steps: slices.Clone(steps), Scores: make([][]float64, len(queries))}
	for i := range res.Scores {
		res.Scores[i] = make([]float64, len(steps)*n)
	}
	for lo := 0; lo < len(queries); lo += q {
		hi := min(lo+q, len(queries))
		losses, lambda, err := ex.queryGrads(params, queries[lo:hi], targets[lo:hi])
		if err != nil {
			return nil, err
		}
		res.QueryLoss = append(res.QueryLoss, losses...)
		err = t.gradDotPass(ctx, ex, params, lambda, steps, res.Scores[lo:hi])
		freeAll(lambda)
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// gradDotPass fills scores[i][k·B·Ctx + …] for the queries whose gradients are lambda (Q×P;
// rows past len(scores) are padding) over the batches of steps.
func (t *Trainer) gradDotPass(ctx context.Context, ex *gradDotExecs, params, lambda []*tensors.Tensor, steps []int,
	scores [][]float64) error {
	n := t.Cfg.Batch * t.Cfg.Ctx
	in := slices.Concat(params, lambda)
	for k, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		bargs := t.batchArgs(ex.influenceExecs, t.BatchAt(s), s)[:3] // tokens, targets, mask
		outs, err := ex.dot.Exec(args(in, bargs...)...)
		if err != nil {
			return fmt.Errorf("grad-dot step %d: %w", s, err)
		}
		if len(outs) != ex.queries {
			freeAll(outs)
			return fmt.Errorf("grad-dot step %d: %d outputs, want %d", s, len(outs), ex.queries)
		}
		for i, o := range outs {
			if i < len(scores) {
				copy(scores[i][k*n:], float64s(o))
			} else {
				o.FinalizeAll()
			}
		}
	}
	return nil
}

// gradDotExecs are the graphs of GradDot: the influence replay's query graph and the
// mask-derivative pass.
type gradDotExecs struct {
	*influenceExecs // cfg, specs, dtype, queries; only its query graph is compiled
	dot             *Exec
}

func newGradDotExecs(cfg Config, dtype dtypes.DType, q int) (*gradDotExecs, error) {
	if dtype != dtypes.Float32 && dtype != dtypes.Float64 {
		return nil, fmt.Errorf("grad-dot: dtype %s, want float32 or float64", dtype)
	}
	backend, err := sharedBackend()
	if err != nil {
		return nil, fmt.Errorf("gomlx backend: %w", err)
	}
	ie := &influenceExecs{cfg: cfg, specs: paramSpecs(cfg), opt: cfg.Optimizer(), dtype: dtype, queries: q}
	e := &gradDotExecs{influenceExecs: ie}
	if ie.query, err = NewExec(backend, ie.queryGraph); err != nil {
		return nil, err
	}
	if e.dot, err = NewExec(backend, e.dotGraph); err != nil {
		ie.query.Finalize()
		return nil, err
	}
	return e, nil
}

func (e *gradDotExecs) finalize() {
	e.query.Finalize()
	e.dot.Finalize()
}

// dotGraph takes params, Q×P query gradients λ, tokens, targets and mask [B, Ctx] and returns
// for each query ∂⟨λ_q, ∇θ L(θ, m)⟩/∂m [B, Ctx], the unclipped gradient of the step's loss.
func (e *gradDotExecs) dotGraph(in []*Node) []*Node {
	P, Q := len(e.specs), e.queries
	params := in[:P]
	rest := in[P+Q*P:]
	tokens, targets, mask := rest[0], rest[1], rest[2]
	logits, _ := forward(e.cfg, weightsFor(e.specs, params), tokens)
	grads := Gradient(maskedLoss(logits, targets, mask, e.cfg.Vocab), params...)
	out := make([]*Node, Q)
	for q := range Q {
		lambda := in[P+q*P : P+(q+1)*P]
		f := ReduceAllSum(Mul(lambda[0], grads[0]))
		for i := 1; i < P; i++ {
			f = Add(f, ReduceAllSum(Mul(lambda[i], grads[i])))
		}
		out[q] = Gradient(f, mask)[0]
	}
	return out
}

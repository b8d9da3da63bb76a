package lm

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// influenceExecs are the compiled graphs of the adjoint replay (influence.go) in one dtype and
// for a fixed number of queries. Every graph takes the parameters first, in paramSpecs order.
type influenceExecs struct {
	cfg     Config
	specs   []ParamSpec
	opt     Optimizer
	dtype   dtypes.DType
	queries int
	step    *Exec // params, bufs, tokens, targets, mask, lr → params', bufs' (the replay)
	query   *Exec // params, tokens [Q, Ctx], pos [Q], target [Q] → losses [Q], then Q×P gradients
	adjoint *Exec // params, Q×P a_W, Q×P a_buf, tokens, targets, mask, lr → Q×P a_W', Q×P a_buf', Q scores [B, Ctx]
}

// newInfluenceExecs compiles the graphs for q queries in dtype (Float32 or Float64).
func newInfluenceExecs(cfg Config, dtype dtypes.DType, q int) (*influenceExecs, error) {
	if dtype != dtypes.Float32 && dtype != dtypes.Float64 {
		return nil, fmt.Errorf("influence: dtype %s, want float32 or float64", dtype)
	}
	backend, err := sharedBackend()
	if err != nil {
		return nil, fmt.Errorf("gomlx backend: %w", err)
	}
	e := &influenceExecs{cfg: cfg, specs: paramSpecs(cfg), opt: cfg.Optimizer(), dtype: dtype, queries: q}
	if e.step, err = NewExec(backend, e.stepGraph); err != nil {
		return nil, err
	}
	if e.query, err = NewExec(backend, e.queryGraph); err != nil {
		return nil, err
	}
	if e.adjoint, err = NewExec(backend, e.adjointGraph); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *influenceExecs) finalize() {
	for _, x := range []*Exec{e.step, e.query, e.adjoint} {
		x.Finalize()
	}
}

// weightsFor names parameter nodes given in specs order.
func weightsFor(specs []ParamSpec, params []*Node) weights {
	w := weights{}
	for i, s := range specs {
		w[s.Name] = params[i]
	}
	return w
}

// gradClip is the training step's gradient ∇_W L_t(W, ε) and its clip scale c_t.
func (e *influenceExecs) gradClip(params []*Node, tokens, targets, mask *Node) ([]*Node, *Node) {
	logits, _ := forward(e.cfg, weightsFor(e.specs, params), tokens)
	grads := Gradient(maskedLoss(logits, targets, mask, e.cfg.Vocab), params...)
	return grads, e.opt.clipScale(tokens.Graph(), grads)
}

// stepGraph is one optimizer step, the training step's update without the capture.
func (e *influenceExecs) stepGraph(in []*Node) []*Node {
	P := len(e.specs)
	params, bufs := in[:P], in[P:2*P]
	grads, clip := e.gradClip(params, in[2*P], in[2*P+1], in[2*P+2])
	newParams, newBufs := e.opt.update(e.specs, params, bufs, grads, clip, in[2*P+3])
	return append(newParams, newBufs...)
}

// queryGraph is each query's loss −log p(target | context) at its position, and its gradient.
func (e *influenceExecs) queryGraph(in []*Node) []*Node {
	P := len(e.specs)
	params := in[:P]
	tokens, pos, target := in[P], in[P+1], in[P+2]
	logits, _ := forward(e.cfg, weightsFor(e.specs, params), tokens)
	at := atPos(logits, pos) // [Q, V]
	losses := Neg(ReduceSum(Mul(LogSoftmax(at, -1), OneHot(target, e.cfg.Vocab, e.dtype)), -1))
	out := []*Node{losses}
	for q := range e.queries {
		out = append(out, Gradient(ReduceAllSum(Slice(losses, AxisElem(q))), params...)...)
	}
	return out
}

// adjointGraph is one step of the reverse pass for every query (the math is in influence.go):
// u = a_buf − η·a_W; with f = ⟨u, c·g⟩, one second backward gives ∂f/∂W (the Hessian-vector
// product, clip term included) and ∂f/∂ε (the scores); then a_W' = a_W + λ⊙u + ∂f/∂W and
// a_buf' = μ·u. The forward and first backward are shared by the queries.
func (e *influenceExecs) adjointGraph(in []*Node) []*Node {
	P, Q := len(e.specs), e.queries
	params := in[:P]
	aW := func(q int) []*Node { return in[P+q*P : P+(q+1)*P] }
	aBuf := func(q int) []*Node { return in[P+(Q+q)*P : P+(Q+q+1)*P] }
	rest := in[P+2*Q*P:]
	tokens, targets, mask, lr := rest[0], rest[1], rest[2], rest[3]
	grads, clip := e.gradClip(params, tokens, targets, mask)
	wrt := append(append([]*Node{}, params...), mask)
	newW, newBuf, scores := make([]*Node, 0, Q*P), make([]*Node, 0, Q*P), make([]*Node, 0, Q)
	for q := range Q {
		u := make([]*Node, P)
		var f *Node
		for i := range P {
			u[i] = Sub(aBuf(q)[i], Mul(lr, aW(q)[i]))
			term := ReduceAllSum(Mul(u[i], grads[i]))
			if f == nil {
				f = term
			} else {
				f = Add(f, term)
			}
		}
		d := Gradient(Mul(clip, f), wrt...)
		for i, s := range e.specs {
			w := Add(aW(q)[i], d[i])
			if l := e.opt.Decay(s.Class); l != 0 {
				w = Add(w, MulScalar(u[i], l))
			}
			newW = append(newW, w)
			newBuf = append(newBuf, MulScalar(u[i], e.opt.Momentum))
		}
		scores = append(scores, d[P])
	}
	return append(append(newW, newBuf...), scores...)
}

// toDType copies float32 slices (a checkpoint's) into tensors of e's dtype, in specs order.
func (e *influenceExecs) toDType(flat [][]float32) []*tensors.Tensor {
	ts := make([]*tensors.Tensor, len(flat))
	for i, v := range flat {
		if e.dtype == dtypes.Float32 {
			ts[i] = tensors.FromFlatDataAndDimensions(append([]float32{}, v...), e.specs[i].Shape...)
			continue
		}
		w := make([]float64, len(v))
		for j, x := range v {
			w[j] = float64(x)
		}
		ts[i] = tensors.FromFlatDataAndDimensions(w, e.specs[i].Shape...)
	}
	return ts
}

// zeros is one zero tensor per parameter in e's dtype.
func (e *influenceExecs) zeros() []*tensors.Tensor {
	ts := make([]*tensors.Tensor, len(e.specs))
	for i, s := range e.specs {
		ts[i] = tensors.FromShape(shapes.Make(e.dtype, s.Shape...))
	}
	return ts
}

// scalar is v as a scalar tensor of e's dtype.
func (e *influenceExecs) scalar(v float64) *tensors.Tensor {
	if e.dtype == dtypes.Float32 {
		return tensors.FromScalar(float32(v))
	}
	return tensors.FromScalar(v)
}

// mask is a loss-weight tensor [B, Ctx] of e's dtype.
func (e *influenceExecs) mask(m []float64) *tensors.Tensor {
	c := e.cfg
	if e.dtype == dtypes.Float32 {
		v := make([]float32, len(m))
		for i, x := range m {
			v[i] = float32(x)
		}
		return tensors.FromFlatDataAndDimensions(v, c.Batch, c.Ctx)
	}
	return tensors.FromFlatDataAndDimensions(append([]float64{}, m...), c.Batch, c.Ctx)
}

// float64s copies a float tensor of either dtype out as float64 and frees it.
func float64s(t *tensors.Tensor) []float64 {
	defer t.FinalizeAll()
	if t.DType() == dtypes.Float64 {
		return tensors.MustCopyFlatData[float64](t)
	}
	v := tensors.MustCopyFlatData[float32](t)
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

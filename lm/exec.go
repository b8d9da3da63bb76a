package lm

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// execs holds the compiled graphs of one model shape. Every graph takes the parameters as its
// first inputs, in paramSpecs order.
type execs struct {
	cfg     Config
	specs   []ParamSpec
	opt     Optimizer
	layers  []Layer // captured by the train step
	probed  []Layer // read by the probe: the whole layer table
	backend backends.Backend
	train   *Exec // params, bufs, tokens, targets, mask, lr → trainOutputs
	probe   *Exec // params, tokens, pos, target → probeOutputs
	next    *Exec // params, tokens, pos → logits at pos (forward only, for sampling)
	loss    *Exec // params, tokens, targets → mean loss
}

// newExecs compiles the graphs; the train step captures the given layers.
func newExecs(cfg Config, layers []Layer) (*execs, error) {
	backend, err := sharedBackend()
	if err != nil {
		return nil, fmt.Errorf("gomlx backend: %w", err)
	}
	e := &execs{cfg: cfg, specs: paramSpecs(cfg), opt: cfg.Optimizer(), layers: layers,
		probed: cfg.LayerTable(), backend: backend}
	if e.train, err = NewExec(backend, e.trainGraph); err != nil {
		return nil, err
	}
	if e.probe, err = NewExec(backend, e.probeGraph); err != nil {
		return nil, err
	}
	if e.next, err = NewExec(backend, e.nextGraph); err != nil {
		return nil, err
	}
	if e.loss, err = NewExec(backend, e.lossGraph); err != nil {
		return nil, err
	}
	return e, nil
}

// weightsOf names the first len(specs) inputs.
func (e *execs) weightsOf(inputs []*Node) weights {
	w := weights{}
	for i, s := range e.specs {
		w[s.Name] = inputs[i]
	}
	return w
}

// nll is the per-token negative log-likelihood [B, T].
func nll(logits, targets *Node, vocab int) *Node {
	return Neg(ReduceSum(Mul(LogSoftmax(logits, -1), OneHot(targets, vocab, logits.DType())), -1))
}

// maskedLoss is the training loss Σ mask·nll / (B·T): the mask is each token's loss weight.
func maskedLoss(logits, targets, mask *Node, vocab int) *Node {
	return DivScalar(ReduceAllSum(Mul(nll(logits, targets, vocab), mask)), float64(targets.Shape().Size()))
}

// trainGraph is one optimizer step with capture (the update is Optimizer.update).
func (e *execs) trainGraph(inputs []*Node) []*Node {
	P, c := len(e.specs), e.cfg
	params, bufs := inputs[:P], inputs[P:2*P]
	tokens, targets, mask, lr := inputs[2*P], inputs[2*P+1], inputs[2*P+2], inputs[2*P+3]
	logits, taps := forward(c, e.weightsOf(inputs), tokens)
	loss := maskedLoss(logits, targets, mask, c.Vocab)

	wrt := append([]*Node{}, params...)
	for _, l := range e.layers {
		wrt = append(wrt, taps[l.Name].y)
	}
	grads := Gradient(loss, wrt...)

	out := newTrainOutputs[*Node](P, e.layers)
	out.Loss, out.Clip = loss, e.opt.clipScale(loss.Graph(), grads[:P])
	out.Params, out.Bufs = e.opt.update(e.specs, params, bufs, grads[:P], out.Clip, lr)
	for i, l := range e.layers {
		out.Captured[l.Name].Keys, out.Captured[l.Name].Grads = flatTokens(taps[l.Name].x), flatTokens(grads[P+i])
	}
	return read(out.slots(e.layers))
}

// flatTokens reshapes [B, T, d] to [B·T, d].
func flatTokens(x *Node) *Node {
	d := x.Shape().Dimensions
	return Reshape(x, d[0]*d[1], d[2])
}

// probeGraph reads every layer at one position per row, with the gradient of that row's
// objective w.r.t. the layer output there (for first-order hidden-layer attribution). The
// objective is u·logits with u = e_target − wr·e_runnerUp − wp·p (p the probabilities, held
// fixed): the target's logit (wr = wp = 0), its margin over the runner-up (wr = 1) or, to
// first order, its log-probability (wp = 1), chosen per row by the inputs wr and wp [B].
func (e *execs) probeGraph(inputs []*Node) []*Node {
	P, c := len(e.specs), e.cfg
	tokens, pos, target, wr, wp := inputs[P], inputs[P+1], inputs[P+2], inputs[P+3], inputs[P+4]
	logits, taps := forward(c, e.weightsOf(inputs), tokens)
	at := func(x *Node) *Node { return atPos(x, pos) }
	out := newProbeOutputs[*Node](e.probed)
	out.Logits = at(logits) // [B, V]
	onehot := OneHot(target, c.Vocab, dtypes.Float32)
	others := Where(GreaterThan(onehot, ZerosLike(onehot)), Scalar(logits.Graph(), dtypes.Float32, math.Inf(-1)), out.Logits)
	out.RunnerUp = ArgMax(others, -1, dtypes.Int32) // [B]
	runner := OneHot(out.RunnerUp, c.Vocab, dtypes.Float32)
	probs := Softmax(out.Logits, -1)
	u := Sub(Sub(onehot, Mul(InsertAxes(wr, -1), runner)), Mul(InsertAxes(wp, -1), probs))
	chosen := ReduceAllSum(Mul(out.Logits, StopGradient(u)))
	ys := make([]*Node, len(e.probed))
	for i, l := range e.probed {
		ys[i] = taps[l.Name].y
	}
	dys := Gradient(chosen, ys...)
	for i, l := range e.probed {
		*out.Layers[l.Name] = probeLayer[*Node]{X: at(taps[l.Name].x), Y: at(ys[i]), DY: at(dys[i])}
	}
	return read(out.slots(e.probed))
}

// nextGraph is the next-token logits at pos [B, V], then each probed layer's input there
// [B, DIn] in e.probed order: the forward pass of probeGraph, without its backward pass.
func (e *execs) nextGraph(inputs []*Node) []*Node {
	P := len(e.specs)
	logits, taps := forward(e.cfg, e.weightsOf(inputs), inputs[P])
	pos := inputs[P+1]
	out := []*Node{atPos(logits, pos)}
	for _, l := range e.probed {
		out = append(out, atPos(taps[l.Name].x, pos))
	}
	return out
}

// atPos selects position pos[b] of each row b of x [B, T, d] → [B, d].
func atPos(x, pos *Node) *Node {
	sel := OneHot(pos, x.Shape().Dimensions[1], x.DType()) // [B, T]
	return DotGeneral(sel, []int{1}, []int{0}, x, []int{1}, []int{0})
}

// lossGraph is the mean next-token loss, for held-out evaluation.
func (e *execs) lossGraph(inputs []*Node) *Node {
	P := len(e.specs)
	logits, _ := forward(e.cfg, e.weightsOf(inputs), inputs[P])
	return ReduceAllMean(nll(logits, inputs[P+1], e.cfg.Vocab))
}

// toTensors wraps flat parameter slices as tensors in paramSpecs order.
func (e *execs) toTensors(flat [][]float32) []*tensors.Tensor {
	ts := make([]*tensors.Tensor, len(flat))
	for i, v := range flat {
		ts[i] = tensors.FromFlatDataAndDimensions(v, e.specs[i].Shape...)
	}
	return ts
}

// args concatenates tensors and extra inputs for Exec.
func args(ts []*tensors.Tensor, extra ...any) []any {
	out := make([]any, 0, len(ts)+len(extra))
	for _, t := range ts {
		out = append(out, t)
	}
	return append(out, extra...)
}

func (e *execs) finalize() {
	for _, x := range []*Exec{e.train, e.probe, e.next, e.loss} {
		x.Finalize()
	}
}

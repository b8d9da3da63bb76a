package lm

import (
	"math"

	. "github.com/gomlx/gomlx/pkg/core/graph"
)

// Schedule is the learning rate over training: linear warmup to LR, then cosine decay to
// MinLRFrac·LR at Steps, flat after that (live training may go past the plan).
type Schedule struct {
	LR        float64 `json:"lr"`
	Warmup    int     `json:"warmup"`
	MinLRFrac float64 `json:"min_lr_frac"`
	Steps     int     `json:"steps"`
}

// At is the learning rate of a step (1-based).
func (s Schedule) At(step int) float64 {
	if step <= s.Warmup {
		return s.LR * float64(step) / float64(s.Warmup)
	}
	if step >= s.Steps {
		return s.LR * s.MinLRFrac
	}
	progress := float64(step-s.Warmup) / float64(s.Steps-s.Warmup)
	return s.LR * (s.MinLRFrac + (1-s.MinLRFrac)*0.5*(1+math.Cos(math.Pi*progress)))
}

// Optimizer is the SGD family for which the dual form is exact: PyTorch's
// SGD(momentum, weight_decay) with global-norm clipping,
//
//	c = min(1, Clip/(‖∇‖+1e-6)); d = c·∇ + λ·W; buf = μ·buf + d; W -= η·buf
//
// with λ chosen per parameter by its class. It is stored whole with the memory, whose dual
// form needs Momentum and the decays (the learning rate and c are recorded per step).
type Optimizer struct {
	Schedule    Schedule `json:"schedule"`
	Momentum    float64  `json:"momentum"`     // heavy-ball μ
	WeightDecay float64  `json:"weight_decay"` // coupled λ of weights and embeddings
	BiasDecay   float64  `json:"bias_decay"`   // λ of linear biases: 0, as Spotlight has always trained
	Clip        float64  `json:"clip"`         // global-norm clip C; 0 disables
}

// Optimizer is the config's optimizer.
func (c Config) Optimizer() Optimizer {
	return Optimizer{
		Schedule: Schedule{LR: c.LR, Warmup: c.Warmup, MinLRFrac: c.MinLRFrac, Steps: c.Steps},
		Momentum: c.Momentum, WeightDecay: c.WeightDecay, BiasDecay: 0, Clip: c.Clip,
	}
}

// Decay is the coupled weight decay λ of a parameter class. LayerNorm is never decayed.
func (o Optimizer) Decay(class ParamClass) float64 {
	switch class {
	case WeightParam:
		return o.WeightDecay
	case BiasParam:
		return o.BiasDecay
	}
	return 0
}

// clipScale builds c = min(1, Clip/(‖∇‖+1e-6)) over the parameter gradients (1 when
// clipping is off), the factor recorded per step.
func (o Optimizer) clipScale(g *Graph, grads []*Node) *Node {
	if o.Clip <= 0 {
		return ScalarOne(g, grads[0].DType())
	}
	sq := ReduceAllSum(Square(grads[0]))
	for _, gr := range grads[1:] {
		sq = Add(sq, ReduceAllSum(Square(gr)))
	}
	return MinScalar(Div(Scalar(g, grads[0].DType(), o.Clip), AddScalar(Sqrt(sq), 1e-6)), 1.0)
}

// update builds one step over every parameter: the new parameters and momentum buffers,
// in specs order.
func (o Optimizer) update(specs []ParamSpec, params, bufs, grads []*Node, clip, lr *Node) (newParams, newBufs []*Node) {
	for i, s := range specs {
		d := Mul(clip, grads[i])
		if l := o.Decay(s.Class); l != 0 {
			d = Add(d, MulScalar(params[i], l))
		}
		buf := Add(MulScalar(bufs[i], o.Momentum), d)
		newBufs = append(newBufs, buf)
		newParams = append(newParams, Sub(params[i], Mul(lr, buf)))
	}
	return newParams, newBufs
}

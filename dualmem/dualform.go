package dualmem

import (
	"fmt"
	"math"

	"github.com/spotlight-lm/spotlight/lm"
)

// The dual form of a linear layer y = x·W + b trained by lm.Optimizer, all in this file:
// its coefficients, the per-step scales, the reference reconstruction, the removal of a
// training token (the counterfactual) and the primal-vs-dual check. The scanner, the query
// engine, verify and eval call these; none recomputes them.
//
// With keys k_{t,i} (the layer's input at token i of step t), raw gradients g_{t,i}
// (∂L_t/∂y, carrying the mean's 1/N), clip factors c_t and step scales
// s_t = β_t·c_t (weights) and s^b_t = β^b_t·c_t (bias, its own decay):
//
//	y(x) = aW·(x·W_1) + aB·b_1 + Σ_t Σ_i (s_t·(k_{t,i}·x) + s^b_t)·g_{t,i}

// Coefficients returns the scalars of the dual form of SGD with heavy-ball momentum mu and
// coupled weight decay lambda (PyTorch SGD semantics, dampening 0, no Nesterov):
//
//	W_{T+1} = a·W_1 + Σ_s beta[s-1]·G_s
//
// where lr[s-1] = η_s is the learning rate applied at step s = 1..T and G_s = c_s·∇_s is the
// clipped gradient of step s. For T = 0 it returns a = 1 and no betas.
//
// Proof sketch. Step s maps the state (W_s, buf_{s-1}) linearly:
//
//	buf_s   = μ·buf_{s-1} + λ·W_s + G_s
//	W_{s+1} = W_s − η_s·buf_s = (1 − η_s λ)·W_s − η_s μ·buf_{s-1} − η_s·G_s
//
// with buf_0 = 0 (PyTorch's first step sets buf = d, the same thing). Let
// (u_s, v_s) = ∂W_{T+1}/∂(W_{s+1}, buf_s) be the adjoint of the state after step s, so
// u_T = 1, v_T = 0. G_s enters buf_s with weight 1 and W_{s+1} with weight −η_s, hence
// β_s = v_s − η_s·u_s. Differentiating the map above through W_s and buf_{s-1} gives
// u_{s-1} = (1 − η_s λ)·u_s + λ·v_s and v_{s-1} = −η_s μ·u_s + μ·v_s, and a = u_0 because
// buf_0 = 0 contributes nothing. Every coefficient is a scalar, so the same identity holds
// for every matrix entry, and for the bias with its own λ.
func Coefficients(lr []float64, mu, lambda float64) (a float64, beta []float64) {
	beta = make([]float64, len(lr))
	u, v := 1.0, 0.0
	for s := len(lr); s >= 1; s-- {
		eta := lr[s-1]
		beta[s-1] = -eta*u + v
		u, v = (1-eta*lambda)*u+lambda*v, -eta*mu*u+mu*v
	}
	return u, beta
}

// DualForm is the scalars of a layer's dual form over a run of recorded steps: the
// coefficients of the initial weights and bias, and per step index (step − first step)
// the scales s_t = β_t·c_t of the weights and of the bias.
type DualForm struct {
	AW, AB float64
	SW, SB []float64
}

// NewDualForm computes the dual form of steps (in order) trained by opt.
func NewDualForm(steps []lm.StepInfo, opt lm.Optimizer) DualForm {
	lr := make([]float64, len(steps))
	for k, si := range steps {
		lr[k] = float64(si.LR)
	}
	var f DualForm
	var betaW, betaB []float64
	f.AW, betaW = Coefficients(lr, opt.Momentum, opt.Decay(lm.WeightParam))
	f.AB, betaB = Coefficients(lr, opt.Momentum, opt.Decay(lm.BiasParam))
	f.SW, f.SB = make([]float64, len(steps)), make([]float64, len(steps))
	for k, si := range steps {
		f.SW[k], f.SB[k] = betaW[k]*float64(si.Clip), betaB[k]*float64(si.Clip)
	}
	return f
}

// Removal is the factor of a training token's gradient in the layer output of a query that
// attends to it with alpha, s_t·α + s^b_t: its weight path and its share of the bias. The
// output without that token's training (the rest of training held fixed) is y − Removal·g.
func (f DualForm) Removal(t int, alpha float64) float64 { return f.SW[t]*alpha + f.SB[t] }

// Reconstruct returns the layer's output for input x (len DIn) computed from the memory
// alone, in float64: the reference dual, a plain loop over every token.
func (m *LayerMemory) Reconstruct(meta Meta, x []float32) []float64 {
	din, dout := m.Spec.DIn, m.Spec.DOut
	if len(x) != din {
		panic(fmt.Sprintf("dualmem: Reconstruct: input has %d values, layer %q takes %d", len(x), m.Spec.Name, din))
	}
	f := NewDualForm(m.Steps, meta.Optimizer)
	y := make([]float64, dout)
	for k, xk := range x {
		row := m.Initial.W[k*dout : (k+1)*dout]
		for j, w := range row {
			y[j] += float64(xk) * float64(w)
		}
	}
	for j := range y {
		y[j] = f.AW*y[j] + f.AB*float64(m.Initial.B[j])
	}
	first := int32(1)
	if len(m.Steps) > 0 {
		first = int32(m.Steps[0].Step)
	}
	for i, st := range m.Step {
		var dot float64
		for k, kv := range m.Keys[i*din : (i+1)*din] {
			dot += float64(kv) * float64(x[k])
		}
		coef := f.Removal(int(st-first), dot)
		for j, g := range m.Grads[i*dout : (i+1)*dout] {
			y[j] += coef * float64(g)
		}
	}
	return y
}

// RemoveToken subtracts training token j's whole effect (Removal) on the layer output dst
// for a query whose attention to it is alpha.
func (s *Scanner) RemoveToken(dst []float64, j int, alpha float64) {
	f := s.Removal(s.StepIndex(j), alpha)
	for o, g := range s.Mem.Grads[j*s.DOut : (j+1)*s.DOut] {
		dst[o] -= f * float64(g)
	}
}

// Counterfactual is the probability of q.Token after removing the hits' training tokens
// from an exact layer (out) whose output for the query is logits: every logit loses each
// hit's Removal times its gradient. It is arithmetic on the final weights with the rest of
// training held fixed, not a retraining.
func (s *Scanner) Counterfactual(logits []float32, q Query, hits []Hit) float64 {
	l := make([]float64, len(logits))
	for c, v := range logits {
		l[c] = float64(v)
	}
	for _, h := range hits {
		alpha, _ := s.Score(q, h.Index)
		s.RemoveToken(l, h.Index, alpha)
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

// Tolerance is the largest relative error (Check.RelErr) accepted between primal and dual
// outputs of a float32 memory; F16Tolerance that of a float16 one, whose keys and gradients
// carry only 11 significant bits.
const (
	Tolerance    = 1e-4
	F16Tolerance = 1e-2
)

// Tolerance is the accepted relative error of a memory stored at precision p.
func (p Precision) Tolerance() float64 {
	if p == F16 {
		return F16Tolerance
	}
	return Tolerance
}

// Check compares a layer's real output (primal) with its reconstruction from memory (dual).
type Check struct {
	AbsErr float64 // max_o |primal_o − dual_o|
	Scale  float64 // max_o |primal_o|
}

// Compare checks one output vector.
func Compare(primal []float32, dual []float64) Check {
	var c Check
	for j, y := range primal {
		c.AbsErr = math.Max(c.AbsErr, math.Abs(float64(y)-dual[j]))
		c.Scale = math.Max(c.Scale, math.Abs(float64(y)))
	}
	return c
}

// RelErr is the error relative to the largest |primal output|.
func (c Check) RelErr() float64 { return c.AbsErr / math.Max(c.Scale, 1e-30) }

package lm

import (
	"math"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
)

// The model: a pre-LayerNorm causal transformer over characters.
//
//	x = embed(tokens) + pos
//	for each block: x = x + attn(ln1(x)); x = x + ff2(relu(ff1(ln2(x))))
//	logits = out(lnf(x))
//
// Parameters are plain graph inputs named like "block0.ff1.w", so a layer's API name is its
// parameter prefix, and the optimizer, checkpoints and capture all walk the same list. The
// taps are keyed by the names of the layer table (layers.go).

// weights maps a parameter name to its node in the graph being built.
type weights map[string]*Node

// tap is a captured linear layer: its input x (the key) and output y (whose gradient is g).
type tap struct{ x, y *Node }

// forward returns logits [B, T, V] and the taps of every layer of the layer table.
func forward(c Config, w weights, tokens *Node) (*Node, map[string]tap) {
	ctx := tokens.Shape().Dimensions[1]
	taps := map[string]tap{}
	dtype := w["embed"].DType()                                       // float32; float64 in influence checks
	onehot := OneHot(tokens, c.Vocab, dtype)                          // [B, T, V]
	x := DotGeneral(onehot, []int{2}, nil, w["embed"], []int{0}, nil) // [B, T, D]
	x = Add(x, InsertAxes(Slice(w["pos"], AxisRange(0, ctx)), 0))     // + [1, T, D]
	mask := causalMask(tokens.Graph(), ctx, dtype)                    // [1, 1, T, T]
	for b := range c.Blocks {
		name := blockName(b)
		x = Add(x, attention(c, w, name, layerNorm(w, name+".ln1", x), mask))
		x = Add(x, feedForward(w, b, layerNorm(w, name+".ln2", x), taps))
	}
	h := layerNorm(w, "lnf", x)
	logits := linear(w, OutLayer, h) // [B, T, V]
	taps[OutLayer] = tap{h, logits}
	return logits, taps
}

// feedForward is ff2(relu(ff1(h))) of block b, tapping both linears.
func feedForward(w weights, b int, h *Node, taps map[string]tap) *Node {
	ff1, ff2 := FFLayer(b, 1), FFLayer(b, 2)
	a := linear(w, ff1, h) // [B, T, 4D]
	r := relu(a)
	f := linear(w, ff2, r) // [B, T, D]
	taps[ff1] = tap{h, a}
	taps[ff2] = tap{r, f}
	return f
}

// relu is max(a, 0) as a times a constant 0/1 mask: its gradient is one multiply, where
// GoMLX v0.26.0 builds eight element-wise passes for the gradient of MaxScalar.
func relu(a *Node) *Node {
	positive := GreaterThan(a, ScalarZero(a.Graph(), a.DType()))
	return Mul(a, StopGradient(ConvertDType(positive, a.DType())))
}

// attention is causal multi-head self-attention with one fused QKV projection, which suits
// the pure-Go backend better than three small matmuls.
func attention(c Config, w weights, block string, h, mask *Node) *Node {
	dims := h.Shape().Dimensions
	batch, ctx, dh := dims[0], dims[1], c.D/c.Heads
	qkv := Reshape(linear(w, block+".qkv", h), batch, ctx, 3, c.Heads, dh) // [B, T, 3, H, Dh]
	part := func(i int) *Node {
		return Reshape(Slice(qkv, AxisRange(), AxisRange(), AxisElem(i)), batch, ctx, c.Heads, dh)
	}
	q, k, v := part(0), part(1), part(2)                                     // [B, T, H, Dh]
	scores := DotGeneral(q, []int{3}, []int{0, 2}, k, []int{3}, []int{0, 2}) // [B, H, T, T]
	scores = Add(MulScalar(scores, 1/math.Sqrt(float64(dh))), mask)
	att := Softmax(scores, -1)
	o := DotGeneral(att, []int{3}, []int{0, 1}, v, []int{1}, []int{0, 2}) // [B, H, T, Dh]
	o = Reshape(TransposeAllAxes(o, 0, 2, 1, 3), batch, ctx, c.D)         // [B, T, D]
	return linear(w, block+".proj", o)
}

// causalMask is 0 where a position may attend and -1e9 where it may not.
func causalMask(g *Graph, ctx int, dtype dtypes.DType) *Node {
	m := make([]float32, ctx*ctx)
	for i := range ctx {
		for j := i + 1; j < ctx; j++ {
			m[i*ctx+j] = -1e9
		}
	}
	c := Const(g, m)
	if dtype != dtypes.Float32 {
		c = ConvertDType(c, dtype)
	}
	return Reshape(c, 1, 1, ctx, ctx)
}

// linear is x·W + b over the last axis of x.
func linear(w weights, name string, x *Node) *Node {
	y := DotGeneral(x, []int{x.Rank() - 1}, nil, w[name+".w"], []int{0}, nil)
	return Add(y, lastAxis(w[name+".b"], y.Rank()))
}

// layerNorm normalises the last axis, then scales and shifts it.
func layerNorm(w weights, name string, x *Node) *Node {
	xc := Sub(x, ReduceAndKeep(x, ReduceMean, -1))
	variance := ReduceAndKeep(Square(xc), ReduceMean, -1)
	xn := Div(xc, Sqrt(AddScalar(variance, 1e-5))) // Rsqrt has no gradient in v0.26.0
	return Add(Mul(xn, lastAxis(w[name+".g"], x.Rank())), lastAxis(w[name+".b"], x.Rank()))
}

// lastAxis reshapes a vector to broadcast along the last axis of a rank-r tensor.
func lastAxis(v *Node, rank int) *Node {
	dims := make([]int, rank)
	for i := range dims {
		dims[i] = 1
	}
	dims[rank-1] = v.Shape().Dimensions[0]
	return Reshape(v, dims...)
}

package lm

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// secondOrderCase is a scalar function of float64 inputs built from the ops the model (and
// its first-order gradient) uses.
type secondOrderCase struct {
	name   string
	shapes [][]int
	scale  float64 // of the random inputs
	f      func(xs []*Node) *Node
}

// weighted is Σ w⊙x for a fixed pseudo-random w, so every output element counts differently.
func weighted(x *Node) *Node {
	rng := rand.New(rand.NewPCG(7, uint64(x.Shape().Size())))
	w := make([]float64, x.Shape().Size())
	for i := range w {
		w[i] = rng.NormFloat64()
	}
	return ReduceAllSum(Mul(x, Reshape(Const(x.Graph(), w), x.Shape().Dimensions...)))
}

var secondOrderCases = []secondOrderCase{
	{"dotgeneral matmul", [][]int{{3, 4}, {4, 5}}, 1, func(x []*Node) *Node {
		return weighted(Square(DotGeneral(x[0], []int{1}, nil, x[1], []int{0}, nil)))
	}},
	{"dotgeneral linear rank 3", [][]int{{2, 3, 4}, {4, 5}}, 1, func(x []*Node) *Node {
		return weighted(Square(DotGeneral(x[0], []int{2}, nil, x[1], []int{0}, nil)))
	}},
	{"dotgeneral attention scores", [][]int{{2, 3, 2, 4}, {2, 3, 2, 4}}, 1, func(x []*Node) *Node {
		return weighted(Square(DotGeneral(x[0], []int{3}, []int{0, 2}, x[1], []int{3}, []int{0, 2})))
	}},
	{"dotgeneral attention values", [][]int{{2, 2, 3, 3}, {2, 3, 2, 4}}, 1, func(x []*Node) *Node {
		return weighted(Square(DotGeneral(x[0], []int{3}, []int{0, 1}, x[1], []int{1}, []int{0, 2})))
	}},
	{"add sub broadcast", [][]int{{2, 3}, {3}}, 1, func(x []*Node) *Node {
		y := Reshape(x[1], 1, 3)
		return weighted(Square(Sub(Add(x[0], y), Mul(y, y))))
	}},
	{"mul broadcast", [][]int{{2, 3}, {3}}, 1, func(x []*Node) *Node {
		return weighted(Square(Mul(x[0], Reshape(x[1], 1, 3))))
	}},
	{"div", [][]int{{2, 3}, {2, 3}}, 1, func(x []*Node) *Node {
		return weighted(Div(x[0], AddScalar(Square(x[1]), 1)))
	}},
	{"sqrt", [][]int{{5}}, 1, func(x []*Node) *Node { return weighted(Sqrt(AddScalar(Square(x[0]), 0.5))) }},
	{"log softmax", [][]int{{2, 5}}, 2, func(x []*Node) *Node { return weighted(LogSoftmax(x[0], -1)) }},
	{"softmax", [][]int{{2, 5}}, 2, func(x []*Node) *Node { return weighted(Softmax(x[0], -1)) }},
	{"reduce mean keep", [][]int{{2, 4}}, 1, func(x []*Node) *Node {
		return weighted(Square(Sub(x[0], ReduceAndKeep(x[0], ReduceMean, -1))))
	}},
	{"reshape transpose", [][]int{{2, 3, 4}}, 1, func(x []*Node) *Node {
		return weighted(Square(Reshape(TransposeAllAxes(x[0], 1, 0, 2), 3, 8)))
	}},
	{"slice", [][]int{{4, 6}}, 1, func(x []*Node) *Node {
		return weighted(Square(Slice(x[0], AxisRange(1, 3), AxisRange(2, 5))))
	}},
	{"slice axis elem", [][]int{{2, 3, 4}}, 1, func(x []*Node) *Node {
		return weighted(Square(Slice(x[0], AxisRange(), AxisElem(1))))
	}},
	{"concatenate", [][]int{{2, 3}, {2, 2}}, 1, func(x []*Node) *Node {
		return weighted(Square(Concatenate([]*Node{x[0], x[1]}, 1)))
	}},
	{"insert axes broadcast", [][]int{{3}}, 1, func(x []*Node) *Node {
		return weighted(Square(Add(InsertAxes(x[0], 0), Ones(x[0].Graph(), shapes.Make(dtypes.Float64, 4, 3)))))
	}},
	{"relu", [][]int{{6}}, 1, func(x []*Node) *Node {
		return weighted(Square(relu(x[0])))
	}},
	{"neg reduce sum", [][]int{{2, 3}}, 1, func(x []*Node) *Node { return weighted(Square(Neg(ReduceSum(x[0], -1)))) }},
	{"clip active", [][]int{{4}}, 3, func(x []*Node) *Node { // min(1, 0.5/(‖x‖+1e-6))·Σ w·x: the clip's own derivative
		c := MinScalar(Div(Scalar(x[0].Graph(), dtypes.Float64, 0.5), AddScalar(Sqrt(ReduceAllSum(Square(x[0]))), 1e-6)), 1.0)
		return Mul(c, weighted(x[0]))
	}},
	{"layer norm", [][]int{{2, 4}, {4}, {4}}, 1, func(x []*Node) *Node {
		w := weights{"n.g": x[1], "n.b": x[2]}
		return weighted(Square(layerNorm(w, "n", x[0])))
	}},
}

// TestSecondOrderGradientsFloat64 checks, op by op in float64, that GoMLX's gradient of a
// gradient (the Hessian-vector product H·v) matches the central difference of the gradient.
func TestSecondOrderGradientsFloat64(t *testing.T) {
	backend, err := sharedBackend()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range secondOrderCases {
		t.Run(tc.name, func(t *testing.T) {
			n := len(tc.shapes)
			exec, err := NewExec(backend, func(in []*Node) []*Node {
				xs, vs := in[:n], in[n:]
				grads := Gradient(tc.f(xs), xs...)
				var gv *Node
				for i, g := range grads {
					term := ReduceAllSum(Mul(g, vs[i]))
					if gv == nil {
						gv = term
					} else {
						gv = Add(gv, term)
					}
				}
				return append(grads, Gradient(gv, xs...)...)
			})
			if err != nil {
				t.Fatal(err)
			}
			defer exec.Finalize()
			rng := rand.New(rand.NewPCG(3, 4))
			xs, vs := make([][]float64, n), make([][]float64, n)
			for i, s := range tc.shapes {
				xs[i], vs[i] = randVec(rng, size(s), tc.scale), randVec(rng, size(s), 1)
			}
			run := func(h float64) [][]float64 {
				var in []any
				for i, s := range tc.shapes {
					x := make([]float64, len(xs[i]))
					for j := range x {
						x[j] = xs[i][j] + h*vs[i][j]
					}
					in = append(in, tensors.FromFlatDataAndDimensions(x, s...))
				}
				for i, s := range tc.shapes {
					in = append(in, tensors.FromFlatDataAndDimensions(vs[i], s...))
				}
				var out [][]float64
				for _, o := range exec.MustExec(in...) {
					out = append(out, float64s(o))
				}
				return out
			}
			const h = 1e-5
			at, plus, minus := run(0), run(h), run(-h)
			for i := range n {
				fd := make([]float64, len(xs[i]))
				for j := range fd {
					fd[j] = (plus[i][j] - minus[i][j]) / (2 * h)
				}
				if relErr(fd, make([]float64, len(fd))) < 1e-3 {
					t.Fatalf("input %d: H·v is ~0, the case checks nothing", i)
				}
				if e := relErr(at[n+i], fd); e > 1e-6 {
					t.Errorf("input %d: H·v differs from the finite difference by %.2g (relative)\n got %v\nwant %v", i, e, at[n+i], fd)
				}
			}
		})
	}
}

func randVec(rng *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = scale * rng.NormFloat64()
	}
	return v
}

func size(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}

// relErr is max|a−b| / max(max|b|, 1e-12).
func relErr(a, b []float64) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(a[i]-b[i]))
		den = math.Max(den, math.Abs(b[i]))
	}
	return num / math.Max(den, 1e-12)
}

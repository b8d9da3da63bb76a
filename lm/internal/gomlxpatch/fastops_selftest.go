package gomlxpatch

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// OpCase is one graph of the ops handled by ops.go on two float32 operands of the given
// dimensions. Exact: the fast result must be bit-identical to simplego's (else 1e-6 relative).
type OpCase struct {
	Name         string
	ADims, BDims []int
	Build        func(a, b *graph.Node) *graph.Node
	Exact        bool
	Scale        float64 // for inexact cases: errors are relative to max(|want|, Scale)
}

func (c OpCase) String() string { return fmt.Sprintf("%s(%v, %v)", c.Name, c.ADims, c.BDims) }

type binFn func(a, b *graph.Node) *graph.Node

var binFns = []struct {
	name string
	fn   binFn
}{
	{"Add", graph.Add}, {"Sub", graph.Sub}, {"Mul", graph.Mul}, {"Div", graph.Div},
	{"Max", graph.Max}, {"Min", graph.Min},
}

// BinaryCase applies op number i of Add, Sub, Mul, Div, Max, Min (mod 6) to a and b. The
// operation is applied twice — the second time to the owned result of the first — so that the
// in-place reuse of inputs is exercised.
func BinaryCase(i int, aDims, bDims []int) OpCase {
	f := binFns[i%len(binFns)]
	return OpCase{Name: f.name, ADims: aDims, BDims: bDims, Exact: true, Build: func(a, b *graph.Node) *graph.Node {
		x := f.fn(a, b)
		if x.Shape().Equal(a.Shape()) {
			return f.fn(graph.Neg(x), a)
		}
		if x.Shape().Equal(b.Shape()) {
			return f.fn(b, graph.Neg(x))
		}
		return x
	}}
}

// ReduceCase reduces a over axes with ReduceSum (kind 0), ReduceMax (1) or ReduceMin (2), and
// adds Neg of the input to the result so that the operand is an owned intermediate.
func ReduceCase(kind int, aDims []int, axes ...int) OpCase {
	names := []string{"ReduceSum", "ReduceMax", "ReduceMin"}
	fns := []func(*graph.Node, ...int) *graph.Node{graph.ReduceSum, graph.ReduceMax, graph.ReduceMin}
	red := 1
	for _, ax := range axes {
		red *= aDims[ax]
	}
	return OpCase{Name: fmt.Sprintf("%s%v", names[kind], axes), ADims: aDims, Exact: true,
		Scale: math.Sqrt(float64(red)),
		Build: func(a, _ *graph.Node) *graph.Node { return fns[kind](graph.Neg(a), axes...) }}
}

// BroadcastCase broadcasts a to newDims, the axes in expanded being new.
func BroadcastCase(aDims, newDims, expanded []int) OpCase {
	return OpCase{Name: fmt.Sprintf("ExpandAndBroadcast%v%v", newDims, expanded), ADims: aDims, Exact: true,
		Build: func(a, _ *graph.Node) *graph.Node { return graph.ExpandAndBroadcast(a, newDims, expanded) }}
}

func opsSelfTestCases() []OpCase {
	var cs []OpCase
	pats := [][2][]int{
		{{37, 19}, {37, 19}},         // same shape
		{{6, 7, 19}, {1, 1, 19}},     // bias over leading axes
		{{6, 7, 19}, {6, 7, 1}},      // per-row value (softmax, norms)
		{{}, {5, 9}},                 // scalar lhs
		{{5, 1, 9}, {5, 7, 9}},       // middle axis, lhs broadcast
		{{5, 1}, {1, 7}},             // both broadcast (outer sum)
		{{300, 257}, {1, 257}},       // large: split over goroutines
		{{2, 150, 257}, {2, 150, 1}}, // large, per-row
	}
	for i, p := range pats {
		for op := range binFns {
			if i < 6 || op%2 == i%2 {
				cs = append(cs, BinaryCase(op, p[0], p[1]))
			}
		}
	}
	for kind := range 3 {
		cs = append(cs,
			ReduceCase(kind, []int{6, 7, 19}, 2),
			ReduceCase(kind, []int{6, 7, 19}, 0, 1),
			ReduceCase(kind, []int{6, 7, 19}, 1),
			ReduceCase(kind, []int{300, 257}, 1),
			ReduceCase(kind, []int{300, 257}, 0),
		)
	}
	cs = append(cs,
		BroadcastCase([]int{19}, []int{6, 7, 19}, []int{0, 1}),
		BroadcastCase([]int{6, 7}, []int{6, 7, 19}, []int{2}),
		BroadcastCase([]int{6, 19}, []int{6, 7, 19}, []int{1}),
		BroadcastCase([]int{}, []int{4, 5}, []int{0, 1}),
		BroadcastCase([]int{300}, []int{300, 257}, []int{1}),
	)
	return cs
}

// runOpCase executes c on backend.
func runOpCase(backend backends.Backend, c OpCase, a, b []float32) (out []float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	exec, err := graph.NewExec(backend, c.Build)
	if err != nil {
		return nil, err
	}
	defer exec.Finalize()
	bDims := c.BDims
	if bDims == nil {
		bDims, b = []int{1}, []float32{0}
	}
	t, err := exec.Exec1(tensors.FromFlatDataAndDimensions(a, c.ADims...),
		tensors.FromFlatDataAndDimensions(b, bDims...))
	if err != nil {
		return nil, err
	}
	return tensors.MustCopyFlatData[float32](t), nil
}

// CompareOpOnBackend runs c with the fast ops and with simplego's and compares the results. It
// toggles the process-wide switch: call it when no other computation runs.
func CompareOpOnBackend(backend backends.Backend, c OpCase, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 11))
	a, b := randomData(rng, size(c.ADims)), randomData(rng, size(c.BDims))
	got, want, err := opsSwitch.offThenOn(c, func() ([]float32, error) { return runOpCase(backend, c, a, b) })
	if err != nil {
		return err
	}
	if c.Exact {
		if len(got) != len(want) {
			return fmt.Errorf("%s: length %d, want %d", c, len(got), len(want))
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
				return fmt.Errorf("%s: element %d: %g, want %g (bit-exact)", c, i, got[i], want[i])
			}
		}
		return nil
	}
	if err := compare(got, want, 1e-6, max(c.Scale, 1)); err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	return nil
}

func opsSelfTest(backend backends.Backend) error {
	for i, c := range opsSelfTestCases() {
		if err := CompareOpOnBackend(backend, c, uint64(i)); err != nil {
			return err
		}
	}
	return nil
}

package gomlxpatch

import (
	"fmt"
	"math/rand/v2"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// dotGeneralVJPSelfTestSpecs are small layouts of the model's products and the awkward ones:
// a dense layer, a transposed weight, attention's batched product, unsorted contracting pairs
// and non-leading batch axes.
var dotGeneralVJPSelfTestSpecs = []Spec{
	{[]int{5, 3}, []int{1}, nil, []int{3, 4}, []int{0}, nil},
	{[]int{5, 3}, []int{1}, nil, []int{4, 3}, []int{1}, nil},
	{[]int{2, 3, 4, 5}, []int{3}, []int{0, 1}, []int{2, 3, 6, 5}, []int{3}, []int{0, 1}},
	{[]int{2, 3, 4}, []int{2, 0}, nil, []int{4, 5, 2}, []int{0, 2}, nil},
	{[]int{4, 2, 3, 5}, []int{2}, []int{3, 1}, []int{5, 3, 2, 6}, []int{1}, []int{0, 2}},
}

// tryGraph runs build's outputs on backend with the given inputs, turning panics (GoMLX's way
// of reporting a bad graph) into errors.
func tryGraph(backend backends.Backend, build func([]*graph.Node) []*graph.Node, inputs ...*tensors.Tensor) (
	outs [][]float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			outs, err = nil, fmt.Errorf("%v", r)
		}
	}()
	exec, err := graph.NewExec(backend, build)
	if err != nil {
		return nil, err
	}
	defer exec.Finalize()
	ts, err := exec.Exec(inputs)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		outs = append(outs, tensors.MustCopyFlatData[float32](t))
	}
	return outs, nil
}

// dotGeneralVJPSelfTest compares the fast DotGeneral VJP with GoMLX's own, both called on the
// same node with the same adjoint.
func dotGeneralVJPSelfTest(backend backends.Backend) error {
	rng := rand.New(rand.NewPCG(13, 17))
	for _, s := range dotGeneralVJPSelfTestSpecs {
		lhs, rhs := randomData(rng, size(s.LhsDims)), randomData(rng, size(s.RhsDims))
		outs, err := tryGraph(backend, func(in []*graph.Node) []*graph.Node {
			out := graph.DotGeneral(in[0], s.LhsContracting, s.LhsBatch, in[1], s.RhsContracting, s.RhsBatch)
			// The adjoint is a function of the inputs, so that the graph needs no third input.
			v := graph.Sin(graph.Add(out, graph.Scalar(out.Graph(), out.DType(), 0.5)))
			fast, err := dotGeneralFastVJP(out, []*graph.Node{v})
			if err != nil {
				panic(err)
			}
			orig := origDotGeneralVJP(out, []*graph.Node{v}, shapes.Make(out.DType()))
			return []*graph.Node{fast[0], fast[1], orig[0], orig[1]}
		}, tensors.FromFlatDataAndDimensions(lhs, s.LhsDims...), tensors.FromFlatDataAndDimensions(rhs, s.RhsDims...))
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		for i, name := range []string{"d/dlhs", "d/drhs"} {
			if err := compare(outs[i], outs[i+2], 1e-5, 1); err != nil {
				return fmt.Errorf("%s %s against GoMLX's gradient: %w", s, name, err)
			}
		}
	}
	return nil
}

// sliceVJPSelfTestCases are unit-stride slices cutting one, two and all axes.
var sliceVJPSelfTestCases = []struct{ dims, starts, limits []int }{
	{[]int{7}, []int{2}, []int{5}},
	{[]int{4, 5, 6}, []int{0, 1, 0}, []int{4, 3, 6}},
	{[]int{4, 5, 6}, []int{1, 2, 0}, []int{4, 5, 1}},
}

// sliceVJPSelfTest checks the Slice VJP against the adjoint scattered into zeros in Go
// (GoMLX's own gradient uses Pad, which simplego cannot run).
func sliceVJPSelfTest(backend backends.Backend) error {
	rng := rand.New(rand.NewPCG(19, 23))
	for _, c := range sliceVJPSelfTestCases {
		outDims := make([]int, len(c.dims))
		specs := make([]graph.SliceAxisSpec, len(c.dims))
		for a := range c.dims {
			outDims[a] = c.limits[a] - c.starts[a]
			specs[a] = graph.AxisRange(c.starts[a], c.limits[a])
		}
		w := randomData(rng, size(outDims))
		outs, err := tryGraph(backend, func(in []*graph.Node) []*graph.Node {
			x, starts, limits, _, err := sliceParams(graph.Slice(in[0], specs...))
			if err != nil {
				panic(err)
			}
			return []*graph.Node{sliceConcatVJP(x, starts, limits, in[1])}
		}, tensors.FromFlatDataAndDimensions(make([]float32, size(c.dims)), c.dims...),
			tensors.FromFlatDataAndDimensions(w, outDims...))
		if err != nil {
			return fmt.Errorf("slice %v[%v:%v]: %w", c.dims, c.starts, c.limits, err)
		}
		if err := compare(outs[0], scatterSlice(w, c.dims, c.starts, outDims), 0, 0); err != nil {
			return fmt.Errorf("slice %v[%v:%v]: %w", c.dims, c.starts, c.limits, err)
		}
	}
	return nil
}

// scatterSlice places w, of dimensions outDims, at starts in zeros of dimensions dims.
func scatterSlice(w []float32, dims, starts, outDims []int) []float32 {
	rank := len(dims)
	out := make([]float32, size(dims))
	idx := make([]int, rank) // index into w, row-major
	for _, val := range w {
		flat := 0
		for a := range rank {
			flat = flat*dims[a] + starts[a] + idx[a]
		}
		out[flat] = val
		for a := rank - 1; a >= 0; a-- {
			if idx[a]++; idx[a] < outDims[a] {
				break
			}
			idx[a] = 0
		}
	}
	return out
}

package gomlxpatch

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// gomlxTestBackend is one backend shared by the tests of this package, with every patch.
var gomlxTestBackend = sync.OnceValues(func() (backends.Backend, error) {
	b, _, err := NewBackend("go:parallelism=-1")
	return b, err
})

func gomlxBackendForTest(tb testing.TB) backends.Backend {
	tb.Helper()
	b, err := gomlxTestBackend()
	if err != nil {
		tb.Fatalf("NewBackend: %v", err)
	}
	return b
}

// gomlxRandTensor returns a float32 tensor of the given dimensions with values in [-1, 1).
func gomlxRandTensor(rng *rand.Rand, dims ...int) (*tensors.Tensor, []float32) {
	n := 1
	for _, d := range dims {
		n *= d
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = 2*rng.Float32() - 1
	}
	return tensors.FromFlatDataAndDimensions(data, dims...), data
}

func gomlxMaxAbsDiff(t *testing.T, a, b []float32) float64 {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("length mismatch: %d vs %d", len(a), len(b))
	}
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

func TestInstallGradientsRegisters(t *testing.T) {
	backend := gomlxBackendForTest(t)
	if dg, sl := installGradients(backend); !dg || !sl { // idempotent
		t.Fatalf("gradient patches on: DotGeneral %v, Slice %v", dg, sl)
	}
	fnPtr := func(f graph.VJP) uintptr { return reflect.ValueOf(f).Pointer() }
	if fnPtr(graph.VJPRegistration[graph.NodeTypeDotGeneral]) != fnPtr(dotGeneralVJP) {
		t.Error("DotGeneral VJP is not the replacement")
	}
	if fnPtr(graph.VJPRegistration[graph.NodeTypeSlice]) != fnPtr(sliceVJP) {
		t.Error("Slice VJP is not the replacement")
	}
	if origDotGeneralVJP == nil || origSliceVJP == nil {
		t.Fatal("originals not saved")
	}
	if fnPtr(origDotGeneralVJP) == fnPtr(dotGeneralVJP) || fnPtr(origSliceVJP) == fnPtr(sliceVJP) {
		t.Fatal("saved 'originals' are the replacements")
	}
}

// TestDotGeneralGradientMatchesOriginal: the gradient of sum(DotGeneral(lhs, rhs) * w) through
// graph.Gradient (the installed replacement) against GoMLX's original VJP called directly on
// the same node with adjoint w.
func TestDotGeneralGradientMatchesOriginal(t *testing.T) {
	backend := gomlxBackendForTest(t)
	cases := []struct {
		name             string
		lhsDims, rhsDims []int
		lc, lb, rc, rb   []int
		outDims          []int // checked: [batch..., lhs cross..., rhs cross...]
	}{
		{"plain [N,in]x[in,out]", []int{5, 3}, []int{3, 4}, []int{1}, nil, []int{0}, nil, []int{5, 4}},
		{"lhs contracting on axis 0", []int{3, 5}, []int{3, 4}, []int{0}, nil, []int{0}, nil, []int{5, 4}},
		{"transposed rhs [out,in]", []int{5, 3}, []int{4, 3}, []int{1}, nil, []int{1}, nil, []int{5, 4}},
		{"attention [B,H,T,D]x[B,H,S,D]", []int{2, 3, 4, 5}, []int{2, 3, 6, 5},
			[]int{3}, []int{0, 1}, []int{3}, []int{0, 1}, []int{2, 3, 4, 6}},
		{"attention values [B,H,T,S]x[B,H,S,D]", []int{2, 3, 4, 6}, []int{2, 3, 6, 5},
			[]int{3}, []int{0, 1}, []int{2}, []int{0, 1}, []int{2, 3, 4, 5}},
		{"two contracting axes, unsorted pairing", []int{2, 3, 4}, []int{4, 5, 2},
			[]int{2, 0}, nil, []int{0, 2}, nil, []int{3, 5}},
		{"two contracting, two cross each", []int{2, 3, 4, 5}, []int{5, 6, 3, 7},
			[]int{3, 1}, nil, []int{0, 2}, nil, []int{2, 4, 6, 7}},
		{"batch axes not leading, reversed", []int{4, 2, 3, 5}, []int{5, 3, 2, 6},
			[]int{2}, []int{3, 1}, []int{1}, []int{0, 2}, []int{5, 2, 4, 6}},
		{"batch + 2 contracting + cross", []int{2, 3, 7, 4}, []int{4, 2, 5, 3},
			[]int{1, 3}, []int{0}, []int{3, 0}, []int{1}, []int{2, 7, 5}},
		{"vector lhs (no lhs cross)", []int{3}, []int{3, 4}, []int{0}, nil, []int{0}, nil, []int{4}},
		{"vector rhs (no rhs cross)", []int{5, 3}, []int{3}, []int{1}, nil, []int{0}, nil, []int{5}},
		{"outer product (no contracting)", []int{3}, []int{4}, nil, nil, nil, nil, []int{3, 4}},
		{"batched outer product", []int{2, 3}, []int{2, 4}, nil, []int{0}, nil, []int{0}, []int{2, 3, 4}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lhsT, _ := gomlxRandTensor(rng, tc.lhsDims...)
			rhsT, _ := gomlxRandTensor(rng, tc.rhsDims...)
			wT, _ := gomlxRandTensor(rng, tc.outDims...)
			exec, err := graph.NewExec(backend, func(in []*graph.Node) []*graph.Node {
				lhs, rhs, w := in[0], in[1], in[2]
				out := graph.DotGeneral(lhs, tc.lc, tc.lb, rhs, tc.rc, tc.rb)
				if !slices.Equal(out.Shape().Dimensions, tc.outDims) {
					panic("unexpected DotGeneral output shape " + out.Shape().String())
				}
				loss := graph.ReduceAllSum(graph.Mul(out, w))
				fixed := graph.Gradient(loss, lhs, rhs)
				orig := origDotGeneralVJP(out, []*graph.Node{w}, shapes.Make(out.DType()))
				return []*graph.Node{fixed[0], fixed[1], orig[0], orig[1]}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer exec.Finalize()
			outs, err := exec.Exec(lhsT, rhsT, wT)
			if err != nil {
				t.Fatal(err)
			}
			for i, name := range []string{"d/dlhs", "d/drhs"} {
				want := []*tensors.Tensor{lhsT, rhsT}[i].Shape()
				if !outs[i].Shape().Equal(want) || !outs[i+2].Shape().Equal(want) {
					t.Fatalf("%s: shapes fixed=%s orig=%s, want %s", name, outs[i].Shape(), outs[i+2].Shape(), want)
				}
				got, ref := tensors.MustCopyFlatData[float32](outs[i]), tensors.MustCopyFlatData[float32](outs[i+2])
				if d := gomlxMaxAbsDiff(t, got, ref); d > 1e-5 {
					t.Errorf("%s: max |fixed - original| = %g", name, d)
				}
			}
		})
	}
}

// TestDotGeneralGradientDenseAnalytic checks the plain dense case against Go arithmetic too:
// dX = W·wᵀ-style sums computed directly.
func TestDotGeneralGradientDenseAnalytic(t *testing.T) {
	backend := gomlxBackendForTest(t)
	const n, in, out = 4, 3, 5
	rng := rand.New(rand.NewPCG(3, 4))
	xT, x := gomlxRandTensor(rng, n, in)
	wT, w := gomlxRandTensor(rng, in, out)
	vT, v := gomlxRandTensor(rng, n, out)
	exec, err := graph.NewExec(backend, func(x, w, v *graph.Node) (*graph.Node, *graph.Node) {
		g := graph.Gradient(graph.ReduceAllSum(graph.Mul(graph.DotGeneral(x, []int{1}, nil, w, []int{0}, nil), v)), x, w)
		return g[0], g[1]
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	dxT, dwT, err := exec.Exec2(xT, wT, vT)
	if err != nil {
		t.Fatal(err)
	}
	dx, dw := tensors.MustCopyFlatData[float32](dxT), tensors.MustCopyFlatData[float32](dwT)
	wantDx, wantDw := make([]float32, n*in), make([]float32, in*out)
	for i := range n {
		for k := range in {
			for j := range out {
				wantDx[i*in+k] += v[i*out+j] * w[k*out+j]
				wantDw[k*out+j] += x[i*in+k] * v[i*out+j]
			}
		}
	}
	if d := gomlxMaxAbsDiff(t, dx, wantDx); d > 1e-5 {
		t.Errorf("dX off by %g", d)
	}
	if d := gomlxMaxAbsDiff(t, dw, wantDw); d > 1e-5 {
		t.Errorf("dW off by %g", d)
	}
}

// TestSliceGradient: the gradient of sum(Slice(x) * w) is w scattered into zeros.
func TestSliceGradient(t *testing.T) {
	backend := gomlxBackendForTest(t)
	cases := []struct {
		name           string
		dims           []int
		starts, limits []int
	}{
		{"rank 1 middle", []int{7}, []int{2}, []int{5}},
		{"rank 1 prefix", []int{7}, []int{0}, []int{3}},
		{"one axis of three", []int{4, 5, 6}, []int{0, 1, 0}, []int{4, 3, 6}},
		{"two axes", []int{4, 5, 6}, []int{1, 0, 2}, []int{3, 5, 5}},
		{"all axes", []int{4, 5, 6}, []int{1, 2, 0}, []int{4, 5, 1}},
		{"suffix on last axis", []int{3, 8}, []int{0, 6}, []int{3, 8}},
		{"full (no-op) slice", []int{3, 4}, []int{0, 0}, []int{3, 4}},
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rank := len(tc.dims)
			outDims := make([]int, rank)
			specs := make([]graph.SliceAxisSpec, rank)
			for a := range rank {
				outDims[a] = tc.limits[a] - tc.starts[a]
				specs[a] = graph.AxisRange(tc.starts[a], tc.limits[a])
			}
			xT, _ := gomlxRandTensor(rng, tc.dims...)
			wT, w := gomlxRandTensor(rng, outDims...)
			exec, err := graph.NewExec(backend, func(x, w *graph.Node) *graph.Node {
				return graph.Gradient(graph.ReduceAllSum(graph.Mul(graph.Slice(x, specs...), w)), x)[0]
			})
			if err != nil {
				t.Fatal(err)
			}
			defer exec.Finalize()
			gT, err := exec.Exec1(xT, wT)
			if err != nil {
				t.Fatal(err)
			}
			if !gT.Shape().Equal(xT.Shape()) {
				t.Fatalf("gradient shape %s, want %s", gT.Shape(), xT.Shape())
			}
			got := tensors.MustCopyFlatData[float32](gT)
			// Expected: scatter w into zeros of x's shape, walking w in row-major order.
			want := make([]float32, len(got))
			idx := make([]int, rank) // index into w
			for _, val := range w {
				flat := 0
				for a := range rank {
					flat = flat*tc.dims[a] + tc.starts[a] + idx[a]
				}
				want[flat] = val
				for a := rank - 1; a >= 0; a-- {
					if idx[a]++; idx[a] < outDims[a] {
						break
					}
					idx[a] = 0
				}
			}
			if d := gomlxMaxAbsDiff(t, got, want); d != 0 {
				t.Errorf("max |got - want| = %g", d)
			}
		})
	}
}

// TestSliceGradientStridedFailsClearly: simplego has no Pad, so strided slices must fail
// with the patch's message (and an error, not a crash or hang).
func TestSliceGradientStridedFailsClearly(t *testing.T) {
	backend := gomlxBackendForTest(t)
	if backend.Name() != "go" && !strings.HasPrefix(backend.Name(), "SimpleGo") {
		t.Skipf("backend %q may support Pad", backend.Name())
	}
	exec, err := graph.NewExec(backend, func(x *graph.Node) *graph.Node {
		return graph.Gradient(graph.ReduceAllSum(graph.Slice(x, graph.AxisRange().Stride(2))), x)[0]
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	_, err = exec.Exec(tensors.FromFlatDataAndDimensions([]float32{1, 2, 3, 4, 5}, 5))
	if err == nil {
		t.Skip("backend handled the strided Slice gradient (has Pad)")
	}
	if !strings.Contains(err.Error(), "non-unit strides") {
		t.Errorf("error does not explain the strided slice: %v", err)
	}
}

// TestGradientReadersRefuseWrongNode: the reflective readers return an error naming the pinned
// version for nodes of another type (the registered VJPs then fall back to GoMLX's own).
func TestGradientReadersRefuseWrongNode(t *testing.T) {
	backend := gomlxBackendForTest(t)
	var errs []error
	exec, err := graph.NewExec(backend, func(x *graph.Node) *graph.Node {
		y := graph.Add(x, x)
		_, err := readDotGeneralParams(y)
		errs = append(errs, err)
		_, _, _, _, err = sliceParams(y)
		errs = append(errs, err)
		_, err = graphNodeParams(graph.Slice(x, graph.AxisRange(1)), "nodeInputsDotGeneral")
		errs = append(errs, err)
		return y
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	if _, err := exec.Exec(tensors.FromFlatDataAndDimensions([]float32{1, 2, 3}, 3)); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 3 {
		t.Fatalf("got %d results", len(errs))
	}
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), PinnedVersion) {
			t.Errorf("case %d: want a layout error naming %s, got %v", i, PinnedVersion, err)
		}
	}
}

// BenchmarkDenseGradient: the gradient of a [2048,128]x[128,512] dense layer (w.r.t. both
// the input and the weights, given the upstream adjoint), with the replacement VJP and with
// GoMLX's original one, each called directly on the same graph shape.
func BenchmarkDenseGradient(b *testing.B) {
	backend := gomlxBackendForTest(b)
	fast := func(node *graph.Node, v []*graph.Node, _ shapes.Shape) []*graph.Node {
		g, err := dotGeneralFastVJP(node, v)
		if err != nil {
			panic(err)
		}
		return g
	}
	const n, in, out = 2048, 128, 512
	rng := rand.New(rand.NewPCG(9, 10))
	xT, _ := gomlxRandTensor(rng, n, in)
	wT, _ := gomlxRandTensor(rng, in, out)
	vT, _ := gomlxRandTensor(rng, n, out)
	for _, bc := range []struct {
		name string
		vjp  graph.VJP
	}{{"fixed", fast}, {"original", origDotGeneralVJP}} {
		b.Run(bc.name, func(b *testing.B) {
			exec, err := graph.NewExec(backend, func(x, w, v *graph.Node) (*graph.Node, *graph.Node) {
				y := graph.DotGeneral(x, []int{1}, nil, w, []int{0}, nil)
				g := bc.vjp(y, []*graph.Node{v}, shapes.Make(y.DType()))
				return g[0], g[1]
			})
			if err != nil {
				b.Fatal(err)
			}
			defer exec.Finalize()
			run := func() {
				dx, dw, err := exec.Exec2(xT, wT, vT)
				if err != nil {
					b.Fatal(err)
				}
				dx.FinalizeAll()
				dw.FinalizeAll()
			}
			run() // compile (b.Loop resets the timer on its first call)
			for b.Loop() {
				run()
			}
		})
	}
}

package gomlxpatch

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// benchSpecs are the matrix products of one training step of preset small (B·T = 2048 tokens).
var benchSpecs = []struct {
	name string
	s    Spec
}{
	{"qkv_2048x128x384", Spec{[]int{2048, 128}, []int{1}, nil, []int{128, 384}, []int{0}, nil}},
	{"ff1_2048x128x512", Spec{[]int{2048, 128}, []int{1}, nil, []int{128, 512}, []int{0}, nil}},
	{"ff2_2048x512x128", Spec{[]int{2048, 512}, []int{1}, nil, []int{512, 128}, []int{0}, nil}},
	{"dW_128x2048x512", Spec{[]int{2048, 128}, []int{0}, nil, []int{2048, 512}, []int{0}, nil}},
	{"dX_2048x512x128T", Spec{[]int{2048, 512}, []int{1}, nil, []int{128, 512}, []int{1}, nil}},
	{"attn_128x64x32x64", Spec{[]int{32, 4, 64, 32}, []int{3}, []int{0, 1}, []int{32, 4, 64, 32}, []int{3}, []int{0, 1}}},
	{"logits_2048x128x91", Spec{[]int{2048, 128}, []int{1}, nil, []int{128, 91}, []int{0}, nil}},
}

func flopsOf(s Spec) float64 {
	f := 2.0 * float64(size(s.LhsDims))
	for i, d := range s.RhsDims {
		isC := false
		for _, ax := range s.RhsContracting {
			isC = isC || ax == i
		}
		for _, ax := range s.RhsBatch {
			isC = isC || ax == i
		}
		if !isC {
			f *= float64(d)
		}
	}
	return f
}

// BenchmarkDotGeneral runs each model shape through a compiled graph with simplego's kernel
// ("simplego") and with this package's ("fastdot"), reporting GFLOP/s.
func BenchmarkDotGeneral(b *testing.B) {
	be := backendForTest(b)
	for _, bs := range benchSpecs {
		rng := rand.New(rand.NewPCG(1, 1))
		lhs := tensors.FromFlatDataAndDimensions(randomData(rng, size(bs.s.LhsDims)), bs.s.LhsDims...)
		rhs := tensors.FromFlatDataAndDimensions(randomData(rng, size(bs.s.RhsDims)), bs.s.RhsDims...)
		exec := graph.MustNewExec(be, func(l, r *graph.Node) *graph.Node {
			return graph.DotGeneral(l, bs.s.LhsContracting, bs.s.LhsBatch, r, bs.s.RhsContracting, bs.s.RhsBatch)
		})
		for _, fast := range []bool{false, true} {
			name := map[bool]string{false: "simplego", true: "fastdot"}[fast]
			b.Run(fmt.Sprintf("%s/%s", bs.name, name), func(b *testing.B) {
				prev := SetFastDot(fast)
				defer SetFastDot(prev)
				for b.Loop() {
					exec.MustExec(lhs, rhs)[0].FinalizeAll()
				}
				b.ReportMetric(flopsOf(bs.s)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
		exec.Finalize()
	}
}

// BenchmarkKernel is the packed GEMM alone (no graph), one and all workers.
func BenchmarkKernel(b *testing.B) {
	for _, bs := range benchSpecs {
		s := bs.s
		lb, lc, lk, _ := operandTables(s.LhsDims, s.LhsBatch, s.LhsContracting)
		rb, rc, rk, _ := operandTables(s.RhsDims, s.RhsBatch, s.RhsContracting)
		p := &problem{batch: len(lb), m: len(lc), n: len(rc), k: len(lk), aBatch: lb, bBatch: rb,
			a: newAxis2(lc, lk), b: newAxis2(rc, rk)}
		rng := rand.New(rand.NewPCG(1, 1))
		a, bb := randomData(rng, size(s.LhsDims)), randomData(rng, size(s.RhsDims))
		c := make([]float32, p.batch*p.m*p.n)
		for _, w := range []int{1, 0} {
			b.Run(fmt.Sprintf("%s/workers=%d", bs.name, w), func(b *testing.B) {
				save := maxWorkers
				defer func() { maxWorkers = save }()
				if w > 0 {
					maxWorkers = func() int { return w }
				}
				for b.Loop() {
					p.run(a, bb, c)
				}
				b.ReportMetric(flopsOf(s)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

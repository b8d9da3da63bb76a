package gomlxpatch

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Spec is one DotGeneral: operand dimensions and their contracting and batch axes.
type Spec struct {
	LhsDims, LhsContracting, LhsBatch []int
	RhsDims, RhsContracting, RhsBatch []int
}

func (s Spec) String() string {
	return fmt.Sprintf("lhs%v c%v b%v · rhs%v c%v b%v", s.LhsDims, s.LhsContracting, s.LhsBatch,
		s.RhsDims, s.RhsContracting, s.RhsBatch)
}

func size(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}

// selfTestSpecs covers the layouts the model uses and the awkward ones, on sizes that are not
// multiples of the register tile, through every parallel path.
var selfTestSpecs = []Spec{
	{[]int{37, 19}, []int{1}, nil, []int{19, 23}, []int{0}, nil},                            // x·W
	{[]int{19, 37}, []int{0}, nil, []int{19, 23}, []int{0}, nil},                            // xᵀ·dy (dW)
	{[]int{37, 19}, []int{1}, nil, []int{23, 19}, []int{1}, nil},                            // dy·Wᵀ
	{[]int{3, 5, 7, 11}, []int{3}, []int{0, 1}, []int{3, 5, 13, 11}, []int{3}, []int{0, 1}}, // attention q·kᵀ
	{[]int{5, 3, 7, 11}, []int{3}, []int{1, 0}, []int{3, 11, 5, 13}, []int{1}, []int{0, 2}}, // permuted batch
	{[]int{4, 5, 6}, []int{1, 2}, nil, []int{6, 5, 3}, []int{1, 0}, nil},                    // two contracting axes
	{[]int{70, 41}, []int{1}, nil, []int{41, 50}, []int{0}, nil},                            // split over rows
	{[]int{300, 45}, []int{0}, nil, []int{300, 29}, []int{0}, nil},                          // long contraction, split
	{[]int{4, 30, 20}, []int{2}, []int{0}, []int{4, 20, 30}, []int{1}, []int{0}},            // split over batch
}

// runSpec executes one DotGeneral on backend with the given operands.
func runSpec(backend backends.Backend, s Spec, lhs, rhs []float32) (out []float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	exec, err := graph.NewExec(backend, func(l, r *graph.Node) *graph.Node {
		return graph.DotGeneral(l, s.LhsContracting, s.LhsBatch, r, s.RhsContracting, s.RhsBatch)
	})
	if err != nil {
		return nil, err
	}
	defer exec.Finalize()
	t, err := exec.Exec1(tensors.FromFlatDataAndDimensions(lhs, s.LhsDims...),
		tensors.FromFlatDataAndDimensions(rhs, s.RhsDims...))
	if err != nil {
		return nil, err
	}
	return tensors.MustCopyFlatData[float32](t), nil
}

func randomData(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// compare checks got against want elementwise to rtol relative to max(|want|, scale).
func compare(got, want []float32, rtol, scale float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(g) != math.IsNaN(w) || math.Abs(g-w) > rtol*math.Max(math.Abs(w), scale) {
			return fmt.Errorf("element %d: %g, want %g", i, g, w)
		}
	}
	return nil
}

// fastSwitch is one of the package's process-wide switches with the counter of the fast path's
// runs; what names the fast path in errors ("fastdot" when it fails, "the fast kernel" when it
// did not run).
type fastSwitch struct {
	enabled    *atomic.Bool
	calls      *atomic.Int64
	name, what string
}

var (
	dotSwitch = fastSwitch{&enabled, &fastCalls, "fastdot", "the fast kernel"}
	opsSwitch = fastSwitch{&opsEnabled, &opsCalls, "fast ops", "the fast ops"}
)

// offThenOn runs run with the switch off (want) and then on (got), checks that the fast path
// ran the second time, and restores the switch. label prefixes the errors.
func (sw fastSwitch) offThenOn(label fmt.Stringer, run func() ([]float32, error)) (got, want []float32, err error) {
	prev := sw.enabled.Load()
	defer sw.enabled.Store(prev)
	sw.enabled.Store(false)
	want, err = run()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: simplego: %w", label, err)
	}
	sw.enabled.Store(true)
	calls := sw.calls.Load()
	got, err = run()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", label, sw.name, err)
	}
	if sw.calls.Load() == calls {
		return nil, nil, fmt.Errorf("%s: %s did not run", label, sw.what)
	}
	return got, want, nil
}

// CompareOnBackend runs s with the fast kernel and with simplego's and compares the results
// (scale: √K of unit normal operands). It toggles the process-wide switch: call it when no
// other computation runs.
func CompareOnBackend(backend backends.Backend, s Spec, seed uint64, rtol float64) error {
	rng := rand.New(rand.NewPCG(seed, 7))
	lhs, rhs := randomData(rng, size(s.LhsDims)), randomData(rng, size(s.RhsDims))
	k := 1
	for _, ax := range s.LhsContracting {
		k *= s.LhsDims[ax]
	}
	got, want, err := dotSwitch.offThenOn(s, func() ([]float32, error) { return runSpec(backend, s, lhs, rhs) })
	if err != nil {
		return err
	}
	if err := compare(got, want, rtol, math.Sqrt(float64(k))); err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	return nil
}

func selfTest(backend backends.Backend) error {
	for i, s := range selfTestSpecs {
		if err := CompareOnBackend(backend, s, uint64(i), 1e-5); err != nil {
			return err
		}
	}
	return nil
}

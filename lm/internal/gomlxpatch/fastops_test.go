package gomlxpatch

import (
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

func opsBackendForTest(t *testing.T) {
	t.Helper()
	if os.Getenv(FastOpsEnvVar) == "0" {
		t.Skip("SPOTLIGHT_FASTOPS=0")
	}
	backendForTest(t)
	if !FastOpsEnabled() {
		t.Fatal("fast ops not enabled by NewBackend")
	}
}

func TestOpsSelfTestCases(t *testing.T) {
	opsBackendForTest(t)
	b := backendForTest(t)
	start := time.Now()
	if err := opsSelfTest(b); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cases in %s", len(opsSelfTestCases()), time.Since(start))
}

// randomBroadcastPair draws an output shape and two operands broadcast to it: each axis of an
// operand is kept or set to 1 at random, sometimes whole operands are scalars.
func randomBroadcastPair(rng *rand.Rand) (a, b []int) {
	rank := rng.IntN(5)
	out := make([]int, rank)
	for i := range out {
		out[i] = 1 + rng.IntN(7)
	}
	if rng.IntN(20) == 0 {
		out = append(out, 200+rng.IntN(200)) // large enough to split over goroutines sometimes
		rank++
	}
	draw := func() []int {
		d := make([]int, rank)
		for i := range d {
			d[i] = out[i]
			if rng.IntN(3) == 0 {
				d[i] = 1
			}
		}
		return d
	}
	a, b = draw(), draw()
	// Make sure every axis has the output dimension in at least one operand.
	for i := range out {
		if a[i] == 1 && b[i] == 1 {
			if rng.IntN(2) == 0 {
				a[i] = out[i]
			} else {
				b[i] = out[i]
			}
		}
	}
	switch rng.IntN(10) {
	case 0:
		a = []int{}
	case 1:
		b = []int{}
	}
	return a, b
}

func TestOpsRandomBroadcasts(t *testing.T) {
	opsBackendForTest(t)
	be := backendForTest(t)
	rng := rand.New(rand.NewPCG(3, 4))
	n := 300
	if testing.Short() {
		n = 60
	}
	for i := range n {
		a, b := randomBroadcastPair(rng)
		c := BinaryCase(i, a, b)
		if err := CompareOpOnBackend(be, c, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpsRandomReductions(t *testing.T) {
	opsBackendForTest(t)
	be := backendForTest(t)
	rng := rand.New(rand.NewPCG(5, 6))
	n := 200
	if testing.Short() {
		n = 40
	}
	for i := range n {
		rank := 1 + rng.IntN(4)
		dims := make([]int, rank)
		for j := range dims {
			dims[j] = 1 + rng.IntN(9)
			if rng.IntN(4) == 0 {
				dims[j] = 1
			}
		}
		if rng.IntN(10) == 0 {
			dims[rank-1] = 300 + rng.IntN(300)
		}
		// A contiguous run of reduced axes.
		lo := rng.IntN(rank)
		hi := lo + 1 + rng.IntN(rank-lo)
		var axes []int
		for ax := lo; ax < hi; ax++ {
			axes = append(axes, ax)
		}
		c := ReduceCase(i%3, dims, axes...)
		if err := CompareOpOnBackend(be, c, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpsRandomBroadcastInDim(t *testing.T) {
	opsBackendForTest(t)
	be := backendForTest(t)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 150 {
		rank := 1 + rng.IntN(4)
		out := make([]int, rank)
		var keep, expanded, aDims []int
		for j := range out {
			out[j] = 1 + rng.IntN(8)
			if rng.IntN(2) == 0 {
				expanded = append(expanded, j)
			} else {
				keep = append(keep, j)
				d := out[j]
				if rng.IntN(4) == 0 {
					d = 1
				}
				aDims = append(aDims, d)
			}
		}
		_ = keep
		if aDims == nil {
			aDims = []int{}
		}
		c := BroadcastCase(aDims, out, expanded)
		if err := CompareOpOnBackend(be, c, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// Layouts the fast ops do not cover fall back to simplego and still compute the right thing.
func TestOpsFallbacks(t *testing.T) {
	opsBackendForTest(t)
	be := backendForTest(t)
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range []OpCase{
		ReduceCase(0, []int{3, 4, 5}, 0, 2), // non-contiguous reduced axes
		ReduceCase(1, []int{3, 4, 5, 6}, 1, 3),
	} {
		a := randomData(rng, size(c.ADims))
		prev := SetFastOps(false)
		want, err := runOpCase(be, c, a, nil)
		SetFastOps(prev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := runOpCase(be, c, a, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := compare(got, want, 0, 0); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
	}
	if _, _, _, ok := planReduce([]int{3, 4, 5}, []int{0, 2}); ok {
		t.Error("planReduce accepted non-contiguous axes")
	}
	if _, _, _, ok := planReduce([]int{3, 1, 5}, []int{0, 1}); !ok {
		t.Error("planReduce refused axes contiguous up to a size-1 axis")
	}
	if _, ok := planBroadcastInDim([]int{3, 4}, []int{1, 0}, []int{4, 3}); ok {
		t.Error("planBroadcastInDim accepted transposing axes")
	}
}

func TestSegmentsPlan(t *testing.T) {
	// [6,7,19] + [1,1,19]: one outer segment of 42 rows where b is broadcast, inner 19.
	p, ok := planBinary([]int{6, 7, 19}, []int{1, 1, 19}, []int{6, 7, 19})
	if !ok || p.n != 19 || !p.aInner || !p.bInner || p.rows != 42 || len(p.dims) != 1 || p.aStr[0] != 19 || p.bStr[0] != 0 {
		t.Errorf("plan %+v", p)
	}
	// [6,7,19] - [6,7,1]: b constant along rows.
	p, ok = planBinary([]int{6, 7, 19}, []int{6, 7, 1}, []int{6, 7, 19})
	if !ok || p.n != 19 || !p.aInner || p.bInner || p.rows != 42 || p.bStr[0] != 1 {
		t.Errorf("plan %+v", p)
	}
	// Same shapes: one segment.
	p, ok = planBinary([]int{6, 7, 19}, []int{6, 7, 19}, []int{6, 7, 19})
	if !ok || p.n != 6*7*19 || p.rows != 1 {
		t.Errorf("plan %+v", p)
	}
}

// A wrong fast op fails the ops self-test.
func TestOpsSelfTestCatchesWrongOp(t *testing.T) {
	opsBackendForTest(t)
	b := backendForTest(t)
	corruptOpsForTest = true
	err := opsSelfTest(b)
	corruptOpsForTest = false
	if err == nil {
		t.Fatal("ops self-test passed a corrupted op")
	}
	t.Logf("self-test caught it: %v", err)
	if err := opsSelfTest(b); err != nil {
		t.Fatal(err)
	}
}

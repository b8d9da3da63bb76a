package gomlxpatch

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/gomlx/gomlx/backends"
)

// backendForTest is the package's test backend, failing unless the fast DotGeneral is on.
func backendForTest(t testing.TB) backends.Backend {
	t.Helper()
	if os.Getenv(FastDotEnvVar) == "0" {
		t.Skip("SPOTLIGHT_FASTDOT=0")
	}
	b := gomlxBackendForTest(t)
	if !FastDotEnabled() {
		t.Fatalf("fast DotGeneral not enabled by NewBackend (kernel %s)", KernelName())
	}
	return b
}

// randomSpec builds a DotGeneral with random batch/cross/contracting axes placed in random
// positions of each operand, random dimensions 1..maxDim.
func randomSpec(rng *rand.Rand, maxDim int) Spec {
	nb, nc := rng.IntN(3), 1+rng.IntN(2)
	nlx, nrx := rng.IntN(3), rng.IntN(3)
	dim := func() int { return 1 + rng.IntN(maxDim) }
	bd, cd := make([]int, nb), make([]int, nc)
	for i := range bd {
		bd[i] = 1 + rng.IntN(4)
	}
	for i := range cd {
		cd[i] = dim()
	}
	build := func(nx int) (dims, contracting, batch []int) {
		rank := nb + nc + nx
		perm := rng.Perm(rank)
		dims = make([]int, rank)
		// perm[0:nb] are batch axes (in batch order), then contracting, then cross.
		for i := range nb {
			dims[perm[i]] = bd[i]
			batch = append(batch, perm[i])
		}
		for i := range nc {
			dims[perm[nb+i]] = cd[i]
			contracting = append(contracting, perm[nb+i])
		}
		for i := range nx {
			dims[perm[nb+nc+i]] = dim()
		}
		return
	}
	var s Spec
	s.LhsDims, s.LhsContracting, s.LhsBatch = build(nlx)
	s.RhsDims, s.RhsContracting, s.RhsBatch = build(nrx)
	return s
}

func TestSelfTestSpecs(t *testing.T) {
	b := backendForTest(t)
	for i, s := range selfTestSpecs {
		if err := CompareOnBackend(b, s, uint64(100+i), 1e-5); err != nil {
			t.Error(err)
		}
	}
}

// The model's shapes (preset small: B=32, T=64, D=128, H=4, FF=512, V=91), cut down in the
// token count to keep the test quick, plus odd sizes.
func TestModelShapes(t *testing.T) {
	b := backendForTest(t)
	const bt, d, ff, v = 512, 128, 512, 91
	specs := []Spec{
		{[]int{bt, d}, []int{1}, nil, []int{d, 3 * d}, []int{0}, nil},
		{[]int{bt, d}, []int{1}, nil, []int{d, ff}, []int{0}, nil},
		{[]int{bt, ff}, []int{1}, nil, []int{ff, d}, []int{0}, nil},
		{[]int{bt, d}, []int{1}, nil, []int{d, v}, []int{0}, nil},
		{[]int{bt, d}, []int{0}, nil, []int{bt, v}, []int{0}, nil},  // dW
		{[]int{bt, v}, []int{1}, nil, []int{d, v}, []int{1}, nil},   // dx
		{[]int{bt, d}, []int{0}, nil, []int{bt, ff}, []int{0}, nil}, // dW
		{[]int{8, 4, 64, 32}, []int{3}, []int{0, 1}, []int{8, 4, 64, 32}, []int{3}, []int{0, 1}},
		{[]int{8, 4, 64, 64}, []int{3}, []int{0, 1}, []int{8, 4, 64, 32}, []int{2}, []int{0, 1}},
		{[]int{8, 4, 64, 64}, []int{2}, []int{0, 1}, []int{8, 4, 64, 32}, []int{2}, []int{0, 1}},
		{[]int{8, 64, 4, 32}, []int{3}, []int{0, 2}, []int{8, 64, 4, 32}, []int{3}, []int{0, 2}},
		{[]int{1, 1}, []int{1}, nil, []int{1, 1}, []int{0}, nil},
		{[]int{7}, []int{0}, nil, []int{7}, []int{0}, nil},
		{[]int{13, 600}, []int{1}, nil, []int{600}, []int{0}, nil},
		{[]int{2, 300, 17}, []int{1}, []int{0}, []int{2, 300, 35}, []int{1}, []int{0}},
	}
	for i, s := range specs {
		if err := CompareOnBackend(b, s, uint64(i), 1e-5); err != nil {
			t.Error(err)
		}
	}
}

func TestRandomLayouts(t *testing.T) {
	b := backendForTest(t)
	rng := rand.New(rand.NewPCG(1, 2))
	n := 150
	if testing.Short() {
		n = 30
	}
	for i := range n {
		s := randomSpec(rng, 40)
		if err := CompareOnBackend(b, s, uint64(i), 1e-5); err != nil {
			t.Error(err)
		}
	}
}

// The pure-Go micro-kernel (used without AVX2/FMA and off amd64) and the serial path.
func TestGoKernelAndSerial(t *testing.T) {
	b := backendForTest(t)
	saveAsm, saveW := useAsm, maxWorkers
	defer func() { useAsm, maxWorkers = saveAsm, saveW }()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, asm := range []bool{false, true} {
		for _, w := range []int{1, 3} {
			useAsm = asm && saveAsm
			maxWorkers = func() int { return w }
			for i := range 20 {
				s := randomSpec(rng, 60)
				if err := CompareOnBackend(b, s, uint64(i), 1e-5); err != nil {
					t.Errorf("asm=%v workers=%d: %v", useAsm, w, err)
				}
			}
		}
	}
}

func TestOffsets(t *testing.T) {
	dims := []int{2, 3, 4}
	strides := []int{12, 4, 1}
	got := fmt.Sprint(offsets(dims, strides, []int{2, 0}))
	if want := "[0 12 1 13 2 14 3 15]"; got != want {
		t.Errorf("offsets = %s, want %s", got, want)
	}
}

// A wrong kernel fails the self-test (which then leaves simplego's kernel in charge).
func TestSelfTestCatchesWrongKernel(t *testing.T) {
	b := backendForTest(t)
	corruptForTest = true
	err := selfTest(b)
	corruptForTest = false
	if err == nil {
		t.Fatal("self-test passed a corrupted kernel")
	}
	t.Logf("self-test caught it: %v", err)
	if err := selfTest(b); err != nil {
		t.Fatal(err)
	}
}

package dualmem

import (
	"context"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/spotlight-lm/spotlight/lm"
)

// randomMemory builds a memory of n tokens (steps of 2048) with random keys and grads.
func randomMemory(n, din, dout int, seed uint64) (*LayerMemory, Meta) {
	rng := rand.New(rand.NewPCG(seed, 1))
	const per = 2048
	var infos []lm.StepInfo
	for t := 0; t*per < n; t++ {
		infos = append(infos, lm.StepInfo{Step: t + 1, LR: 0.1, Clip: 0.9, Rows: 1, Ctx: min(per, n-t*per)})
	}
	m := newLayerMemory(LayerSpec{Name: "out", DIn: din, DOut: dout}, infos)
	fill := func(v []float32) {
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
	}
	fill(m.Keys)
	fill(m.Grads)
	for j := range m.Offsets {
		m.Offsets[j] = int64(j % 5000)
	}
	m.Initial = lm.Initial{W: make([]float32, din*dout), B: make([]float32, dout)}
	fill(m.Initial.W)
	fill(m.Initial.B)
	return m, Meta{Optimizer: lm.Optimizer{Momentum: 0.9, WeightDecay: 1e-3}}
}

func TestScanMatchesBruteForce(t *testing.T) {
	mem, meta := randomMemory(10000, 24, 7, 1)
	s := NewScanner(mem, meta)
	rng := rand.New(rand.NewPCG(2, 2))
	var qs []Query
	for i := range 5 {
		x, u := make([]float32, 24), make([]float32, 7)
		for k := range x {
			x[k] = float32(rng.NormFloat64())
		}
		for k := range u {
			u[k] = float32(rng.NormFloat64())
		}
		q := Query{X: x, Token: i % 7}
		if i%2 == 1 {
			q = Query{X: x, U: u, Token: -1}
		}
		qs = append(qs, q)
	}
	for _, kern := range []Kernel{KernelGo, KernelGemm, KernelSIMD} {
		res, err := s.Scan(context.Background(), qs, ScanOptions{TopK: 9, Kernel: kern, Block: 300, Workers: 3})
		if err != nil {
			t.Fatal(err)
		}
		for qi, q := range qs {
			r := res[qi]
			type sc struct {
				j    int
				a, c float64
			}
			all := make([]sc, s.N)
			for j := range all {
				a, c := s.Score(q, j)
				all[j] = sc{j, a, c}
			}
			sort.Slice(all, func(p, q int) bool { return math.Abs(all[p].a) > math.Abs(all[q].a) })
			for k, h := range r.TopAttention {
				if h.Index != all[k].j {
					t.Fatalf("kernel %d query %d rank %d: %d, want %d", kern, qi, k, h.Index, all[k].j)
				}
			}
			sort.Slice(all, func(p, q int) bool { return all[p].c > all[q].c })
			for k, h := range r.TopContribution {
				if h.Index != all[k].j {
					t.Fatalf("kernel %d query %d contribution rank %d: %d, want %d", kern, qi, k, h.Index, all[k].j)
				}
			}
			// The identity against the reference reconstruction.
			y := mem.Reconstruct(meta, q.X)
			var want float64
			if q.Token >= 0 {
				want = y[q.Token]
			} else {
				for o, u := range q.U {
					want += y[o] * float64(u)
				}
			}
			if d := math.Abs(r.Total() - want); d > 1e-4*math.Max(1, math.Abs(want)) {
				t.Fatalf("query %d: total %g, reconstruct %g", qi, r.Total(), want)
			}
			d := s.Dual(q.X)
			for o := range y {
				if math.Abs(d[o]-y[o]) > 1e-9*math.Max(1, math.Abs(y[o])) {
					t.Fatalf("Dual[%d] = %g, reconstruct %g", o, d[o], y[o])
				}
			}
		}
	}
}

var benchBig = flag.Bool("spotlight.big", false, "run BenchmarkScan on 4M×128 and 1M×512 keys too")

// BenchmarkScan: per memory size, a plain streaming read of the key slab, one query, a
// 32-token request (all aggregates) with each kernel, and gonum blas32.Gemm alone over
// 4096-key blocks. GB/s counts the key slab bytes once per op.
func BenchmarkScan(b *testing.B) {
	big := *benchBig || os.Getenv("SPOTLIGHT_BENCH_BIG") == "1"
	sizes := []struct {
		n, d int
		big  bool
	}{{100_000, 128, false}, {1_000_000, 128, false}, {4_000_000, 128, true}, {1_000_000, 512, true}}
	for _, sz := range sizes {
		if sz.big && !big {
			continue
		}
		mem, meta := randomMemory(sz.n, sz.d, 80, 7)
		s := NewScanner(mem, meta)
		bytes := float64(len(mem.Keys) * 4)
		rng := rand.New(rand.NewPCG(3, 3))
		qs := make([]Query, 32)
		for i := range qs {
			x := make([]float32, sz.d)
			for k := range x {
				x[k] = float32(rng.NormFloat64())
			}
			qs[i] = Query{X: x, Token: i % 80}
		}
		name := func(s string) string { return s + "/n=" + itoa(sz.n) + "/d=" + itoa(sz.d) }
		report := func(b *testing.B) {
			b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
		}
		b.Run(name("read"), func(b *testing.B) {
			for b.Loop() {
				streamSum(mem.Keys)
			}
			report(b)
		})
		for _, c := range []struct {
			label string
			q     int
			k     Kernel
		}{{"query1-simd", 1, KernelSIMD}, {"query1-go", 1, KernelGo}, {"query1-gemm", 1, KernelGemm}, {"req32-simd", 32, KernelSIMD}, {"req32-go", 32, KernelGo}, {"req32-gemm", 32, KernelGemm}} {
			b.Run(name(c.label), func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Scan(context.Background(), qs[:c.q], ScanOptions{TopK: 10, Kernel: c.k}); err != nil {
						b.Fatal(err)
					}
				}
				report(b)
			})
		}
		xs := make([]float32, 32*sz.d)
		for i, q := range qs {
			copy(xs[i*sz.d:], q.X)
		}
		b.Run(name("gemm32-only"), func(b *testing.B) {
			for b.Loop() {
				alphaOnly(gemmBlock, mem.Keys, sz.d, xs, 32)
			}
			report(b)
		})
		b.Run(name("simd32-only"), func(b *testing.B) {
			for b.Loop() {
				alphaOnly(dotBlockAVX, mem.Keys, sz.d, xs, 32)
			}
			report(b)
		})
		mem, s = nil, nil
		runtime.GC()
	}
}

func itoa(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "K"
	}
	return strconv.Itoa(n)
}

// streamSum reads the slab once over all cores.
func streamSum(v []float32) float32 {
	w := runtime.GOMAXPROCS(0)
	sums := make([]float32, w)
	var wg sync.WaitGroup
	chunk := (len(v) + w - 1) / w
	for i := range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part := v[min(i*chunk, len(v)):min((i+1)*chunk, len(v))]
			var s0, s1, s2, s3 float32
			for k := 0; k+4 <= len(part); k += 4 {
				s0 += part[k]
				s1 += part[k+1]
				s2 += part[k+2]
				s3 += part[k+3]
			}
			sums[i] = s0 + s1 + s2 + s3
		}()
	}
	wg.Wait()
	return sums[0]
}

// alphaOnly runs a kernel over 4096-key blocks on all cores, α only (no aggregates): with
// gemmBlock it is the gonum blas32.Gemm baseline.
func alphaOnly(kern func([]float32, int, int, []float32, int, []float32), keys []float32, d int, xs []float32, q int) {
	const blk = 4096
	n := len(keys) / d
	w := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for i := range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]float32, blk*q)
			for j0 := i * blk; j0 < n; j0 += w * blk {
				nb := min(blk, n-j0)
				kern(keys[j0*d:], nb, d, xs, q, out)
			}
		}()
	}
	wg.Wait()
}

func TestKernelsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, d := range []int{8, 16, 24, 128, 13} {
		for _, nb := range []int{1, 4, 7, 33} {
			for _, q := range []int{1, 2, 3, 32} {
				keys, xs := make([]float32, nb*d), make([]float32, q*d)
				for i := range keys {
					keys[i] = float32(rng.NormFloat64())
				}
				for i := range xs {
					xs[i] = float32(rng.NormFloat64())
				}
				want, got, gm := make([]float32, nb*q), make([]float32, nb*q), make([]float32, nb*q)
				dotBlock(keys, nb, d, xs, q, want)
				dotBlockAVX(keys, nb, d, xs, q, got)
				gemmBlock(keys, nb, d, xs, q, gm)
				for i := range want {
					if math.Abs(float64(got[i]-want[i])) > 1e-4 || math.Abs(float64(gm[i]-want[i])) > 1e-4 {
						t.Fatalf("d=%d nb=%d q=%d [%d]: go %g simd %g gemm %g", d, nb, q, i, want[i], got[i], gm[i])
					}
				}
			}
		}
	}
}

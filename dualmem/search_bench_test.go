package dualmem

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"

	"github.com/spotlight-lm/spotlight/lm"
)

// benchMemDir is a trained data directory to take real keys, gradients and queries from
// (opened read-only); without one, a tiny model is trained.
func benchMemDir(b *testing.B) string {
	if d := os.Getenv("SPOTLIGHT_BENCH_MEM"); d != "" {
		return d
	}
	if _, err := os.Stat("/tmp/mem-default/db"); err == nil {
		return "/tmp/mem-default"
	}
	return trainStore(b, 40)
}

func openBenchMem(b *testing.B) (*Store, []*LayerMemory) {
	s, err := OpenReadOnly(benchMemDir(b))
	if err != nil {
		b.Fatal(err)
	}
	mems, err := s.Memory(s.Steps(), nil)
	if err != nil {
		s.Close()
		b.Fatal(err)
	}
	return s, mems
}

// heldOutQueries are n real queries for m: the keys of random tokens of its last step
// (which the searches leave out), with the token's target as the projection for `out`
// and its own gradient as the projection U for hidden layers (a proxy for ∂logit/∂y).
func heldOutQueries(m *LayerMemory, n int, seed uint64) []Query {
	rng := rand.New(rand.NewPCG(seed, 11))
	din, dout := m.Spec.DIn, m.Spec.DOut
	last := m.Tokens() - m.Steps[len(m.Steps)-1].Tokens()
	qs := make([]Query, n)
	for i := range qs {
		j := last + rng.IntN(m.Tokens()-last)
		qs[i] = Query{X: m.Keys[j*din : (j+1)*din], Token: int(m.Targets[j])}
		if m.Spec.Name != "out" {
			qs[i] = Query{X: qs[i].X, U: m.Grads[j*dout : (j+1)*dout], Token: -1}
		}
	}
	return qs
}

// searchMetrics runs Search once per iteration and reports the fractions it read.
func searchMetrics(b *testing.B, s *Scanner, qs []Query, opt SearchOptions) {
	var st ScanStats
	c0 := cpuTime()
	for b.Loop() {
		res, err := s.Search(context.Background(), qs, opt)
		if err != nil {
			b.Fatal(err)
		}
		st = res[0].Stats
	}
	b.ReportMetric(float64(st.BytesRead)/float64(st.BytesTotal), "bytes-frac")
	b.ReportMetric(float64(st.BlocksRead)/float64(st.BlocksTotal), "blocks-frac")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
	b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/op")
}

// BenchmarkSearchReal: every layer of a real trained memory (the default model's when
// /tmp/mem-default exists), 8 and 32 held-out queries, top-10 by contribution, by
// attention and both, against Scan over the same range.
func BenchmarkSearchReal(b *testing.B) {
	st, mems := openBenchMem(b)
	defer st.Close()
	for _, m := range mems {
		s := NewScanner(m, st.Meta())
		s.index() // bounds computed in memory when the directory has no sidecar
		to := s.N - m.Steps[len(m.Steps)-1].Tokens()
		for _, nq := range []int{8, 32} {
			qs := heldOutQueries(m, nq, 5)
			name := m.Spec.Name + "/q=" + itoa(nq)
			for _, rk := range []struct {
				label      string
				skipA, skC bool
			}{{"contribution", true, false}, {"attention", false, true}, {"both", false, false}} {
				b.Run(name+"/"+rk.label, func(b *testing.B) {
					searchMetrics(b, s, qs, SearchOptions{TopK: 10, To: to, SkipAttention: rk.skipA, SkipContribution: rk.skC})
				})
			}
			b.Run(name+"/scan", func(b *testing.B) {
				c0 := cpuTime()
				for b.Loop() {
					if _, err := s.Scan(context.Background(), qs, ScanOptions{TopK: 10, To: to}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
				b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/op")
			})
		}
	}
}

// tiledMemory is a memory of n tokens made from src's steps but its last (kept for
// queries), repeated in order, each key and gradient value scaled by 1 + 0.02·N(0,1) so
// that the copies are not exact ties; the learning rate schedule repeats with the steps.
func tiledMemory(src *LayerMemory, n int) *LayerMemory {
	rng := rand.New(rand.NewPCG(13, 13))
	base := src.Steps[:len(src.Steps)-1]
	var infos []lm.StepInfo
	for total := 0; total < n; {
		si := base[len(infos)%len(base)]
		if si.Tokens() > n-total {
			break
		}
		si.Step = len(infos) + 1
		infos = append(infos, si)
		total += si.Tokens()
	}
	m := newLayerMemory(src.Spec, infos)
	m.Initial = src.Initial
	din, dout := src.Spec.DIn, src.Spec.DOut
	srcN := src.Tokens() - src.Steps[len(src.Steps)-1].Tokens()
	noise := make([]float32, 4096)
	for i := range noise {
		noise[i] = float32(1 + 0.02*rng.NormFloat64())
	}
	for j := range m.Tokens() {
		sj := j % srcN
		m.Targets[j], m.Offsets[j] = src.Targets[sj], src.Offsets[sj]
		o := rng.IntN(len(noise) - din - dout)
		for i, v := range src.Keys[sj*din : (sj+1)*din] {
			m.Keys[j*din+i] = v * noise[o+i]
		}
		for i, v := range src.Grads[sj*dout : (sj+1)*dout] {
			m.Grads[j*dout+i] = v * noise[o+din+i]
		}
	}
	return m
}

// BenchmarkSearch beside BenchmarkScan: the `out` memory of a trained model tiled to 1M and
// 4M tokens (16M with -spotlight.big or SPOTLIGHT_BENCH_BIG=1), a 32-query batch of held-out
// queries, top-10 by contribution and by attention, and Scan's 32-token request on the same
// memory.
func BenchmarkSearch(b *testing.B) {
	st, mems := openBenchMem(b)
	var src *LayerMemory
	for li, l := range st.Meta().Layers {
		if l.Name == "out" {
			src = mems[li]
		}
	}
	meta := st.Meta()
	qs := heldOutQueries(src, 32, 5)
	for i := range qs { // the queries outlive the store
		qs[i].X = append([]float32(nil), qs[i].X...)
	}
	sizes := []int{1_000_000, 4_000_000}
	if *benchBig || os.Getenv("SPOTLIGHT_BENCH_BIG") == "1" {
		sizes = append(sizes, 16_000_000)
	}
	for _, n := range sizes {
		m := tiledMemory(src, n)
		s := NewScanner(m, meta)
		s.index()
		name := "n=" + itoa(n) + "/d=" + itoa(m.Spec.DIn)
		b.Run(name+"/contribution", func(b *testing.B) {
			searchMetrics(b, s, qs, SearchOptions{TopK: 10, SkipAttention: true})
		})
		b.Run(name+"/attention", func(b *testing.B) {
			searchMetrics(b, s, qs, SearchOptions{TopK: 10, SkipContribution: true})
		})
		b.Run(name+"/both", func(b *testing.B) {
			searchMetrics(b, s, qs, SearchOptions{TopK: 10})
		})
		b.Run(name+"/scan", func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				if _, err := s.Scan(context.Background(), qs, ScanOptions{TopK: 10}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
			b.ReportMetric((cpuTime()-c0).Seconds()*1e3/float64(b.N), "cpu-ms/op")
		})
		m, s = nil, nil
		runtime.GC()
	}
	st.Close()
}

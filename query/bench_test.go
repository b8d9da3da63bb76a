package query

import (
	"context"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// benchRequest is the request the benchmarks time: 16 generated tokens, every layer, the
// default options.
func benchRequest() Request {
	return Request{Prompt: "The light ", Tokens: 16}
}

// BenchmarkGenerate times a 16-token all-layer generate request on the test's small model,
// with the dual weights already built (as a serving engine has them).
func BenchmarkGenerate(b *testing.B) {
	e := engine(b)
	benchGenerate(b, e)
}

// BenchmarkGenerateData is BenchmarkGenerate on the data directory named by
// SPOTLIGHT_BENCH_DATA (opened read-only), e.g. the default model.
func BenchmarkGenerateData(b *testing.B) {
	t0 := time.Now()
	e := openDataEngine(b, "SPOTLIGHT_BENCH_DATA", false)
	b.Logf("engine ready in %v", time.Since(t0))
	benchGenerate(b, e)
}

func benchGenerate(b *testing.B, e *Engine) {
	t0 := time.Now()
	for name := range e.layers {
		e.layers[name].Warm()
	}
	b.Logf("dual weights built in %v", time.Since(t0))
	cpu0 := cpuTime()
	for b.Loop() {
		w0 := time.Now()
		if _, err := e.Generate(context.Background(), benchRequest()); err != nil {
			b.Fatal(err)
		}
		b.Logf("request %v", time.Since(w0).Round(time.Millisecond))
	}
	// On a shared machine the wall time depends on the other jobs; the CPU time less so.
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// majorFaults is how many page faults of the process so far read from disk.
func majorFaults() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Majflt
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// openOutData opens the data directory named by SPOTLIGHT_BENCH_OUT as `spotlight bench
// memory` opens a tiled memory (every committed step, whatever the checkpoint's step), or
// skips.
func openOutData(tb testing.TB) *Engine {
	e := openDataEngine(tb, "SPOTLIGHT_BENCH_OUT", true)
	if err := e.Scanner(lm.OutLayer).HasAggregates(); err != nil {
		tb.Fatal(err)
	}
	return e
}

// openDataEngine opens the data directory named by the environment variable env read-only
// and builds an engine on its checkpoint, reading every committed step when allSteps is set
// (a tiled memory holds more than the checkpoint was trained on), or skips when env is unset.
func openDataEngine(tb testing.TB, env string, allSteps bool) *Engine {
	dir := os.Getenv(env)
	if dir == "" {
		tb.Skip(env + " is not set")
	}
	store, err := dualmem.OpenReadOnly(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	_, ckpt, err := store.Checkpoint()
	if err != nil {
		tb.Fatal(err)
	}
	m, err := lm.LoadModel(ckpt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Close)
	if allSteps {
		m.Step = store.Steps()
	}
	e, err := NewEngine(m, store, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	return e
}

// outRequest is the size sweep's request: 32 generated tokens, layer out, top 10 by token.
func outRequest(rank, scan string) Request {
	temp := DefaultTemperature
	return Request{Prompt: "The rays of light", Tokens: 32, TopK: 10, GroupBy: GroupToken, RankBy: rank,
		Layers: []string{lm.OutLayer}, Temperature: &temp, Seed: 1, Scan: scan}
}

// BenchmarkOutRequest times the size sweep's request, pruned, by contribution and by
// attention on the data directory named by SPOTLIGHT_BENCH_OUT (e.g. a tiled 16M memory).
func BenchmarkOutRequest(b *testing.B) {
	e := openOutData(b)
	for _, rank := range []string{RankContribution, RankAttention} {
		req := outRequest(rank, ScanPruned)
		b.Run(rank, func(b *testing.B) {
			// One untimed request first, as the sweep warms up: the search index, the page cache.
			if _, err := e.Generate(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			var st dualmem.ScanStats
			var wall, cpu []float64
			f0 := majorFaults()
			for b.Loop() {
				w0, c0 := time.Now(), cpuTime()
				a, err := e.Generate(context.Background(), req)
				if err != nil {
					b.Fatal(err)
				}
				wall, cpu = append(wall, time.Since(w0).Seconds()*1e3), append(cpu, (cpuTime()-c0).Seconds()*1e3)
				st = a.Tokens[0].Layers[lm.OutLayer].Scan.ScanStats
			}
			// On a shared machine the wall time depends on the other jobs; the CPU time less so.
			b.ReportMetric(p50(wall), "p50-ms")
			b.ReportMetric(p50(cpu), "p50-cpu-ms")
			// Pages read from disk: above 0, the page cache did not hold what the requests read.
			b.ReportMetric(float64(majorFaults()-f0)/float64(b.N), "major-faults/op")
			b.ReportMetric(float64(st.BytesRead)/float64(st.BytesTotal), "bytes-frac")
			b.ReportMetric(float64(st.BlocksRead)/float64(st.BlocksTotal), "blocks-frac")
		})
	}
}

// TestOutRequestData: on the data directory named by SPOTLIGHT_BENCH_OUT, the size sweep's
// pruned request gives the full scan's top lists and by_offset, and its totals and bins to
// the float32 scan's rounding, by contribution and by attention.
func TestOutRequestData(t *testing.T) {
	e := openOutData(t)
	ctx := context.Background()
	for _, rank := range []string{RankContribution, RankAttention} {
		full, err := e.Generate(ctx, outRequest(rank, ScanFull))
		if err != nil {
			t.Fatal(err)
		}
		pruned, err := e.Generate(ctx, outRequest(rank, ScanPruned))
		if err != nil {
			t.Fatal(err)
		}
		for i, ft := range full.Tokens {
			f, p := ft.Layers[lm.OutLayer], pruned.Tokens[i].Layers[lm.OutLayer]
			if !slices.Equal(p.Top, f.Top) || !slices.Equal(p.ByOffset, f.ByOffset) {
				t.Errorf("%s token %d: top lists differ:\npruned %+v\nfull   %+v", rank, i, p.Top, f.Top)
			}
			if p.W0Term != f.W0Term || p.BiasTerm != f.BiasTerm || !relClose(p.DualCheck.Dual, f.DualCheck.Dual, 1e-5) {
				t.Errorf("%s token %d: terms %g %g, dual %g; full %g %g, %g", rank, i, p.W0Term, p.BiasTerm, p.DualCheck.Dual,
					f.W0Term, f.BiasTerm, f.DualCheck.Dual)
			}
			for b, fb := range f.Timeline {
				if pb := p.Timeline[b]; pb.FromStep != fb.FromStep || pb.ToStep != fb.ToStep ||
					!relClose(pb.Attention, fb.Attention, 1e-5) || !relClose(pb.Contribution, fb.Contribution, 1e-5) {
					t.Errorf("%s token %d bin %d: %+v, full %+v", rank, i, b, pb, fb)
				}
			}
		}
		t.Logf("%s: pruned read %+v", rank, pruned.Tokens[0].Layers[lm.OutLayer].Scan.ScanStats)
	}
}

// p50 is the median of xs (which it sorts).
func p50(xs []float64) float64 {
	slices.Sort(xs)
	if n := len(xs); n%2 == 1 {
		return xs[n/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

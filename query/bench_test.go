package query

import (
	"context"
	"os"
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
	dir := os.Getenv("SPOTLIGHT_BENCH_DATA")
	if dir == "" {
		b.Skip("SPOTLIGHT_BENCH_DATA is not set")
	}
	store, err := dualmem.OpenReadOnly(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	_, ckpt, err := store.Checkpoint()
	if err != nil {
		b.Fatal(err)
	}
	m, err := lm.LoadModel(ckpt)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	t0 := time.Now()
	e, err := NewEngine(m, store, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
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

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkOutRequest times the size sweep's request (32 generated tokens, layer out,
// top 10 by token, pruned) by contribution and by attention on the data directory named by
// SPOTLIGHT_BENCH_OUT, opened as `spotlight bench memory` opens a tiled memory: every
// committed step, whatever the checkpoint's step.
func BenchmarkOutRequest(b *testing.B) {
	dir := os.Getenv("SPOTLIGHT_BENCH_OUT")
	if dir == "" {
		b.Skip("SPOTLIGHT_BENCH_OUT is not set")
	}
	store, err := dualmem.OpenReadOnly(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	_, ckpt, err := store.Checkpoint()
	if err != nil {
		b.Fatal(err)
	}
	m, err := lm.LoadModel(ckpt)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	m.Step = store.Steps()
	e, err := NewEngine(m, store, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if err := e.Scanner(lm.OutLayer).HasAggregates(); err != nil {
		b.Fatal(err)
	}
	temp := DefaultTemperature
	for _, rank := range []string{RankContribution, RankAttention} {
		req := Request{Prompt: "The rays of light", Tokens: 32, TopK: 10, GroupBy: GroupToken, RankBy: rank,
			Layers: []string{lm.OutLayer}, Temperature: &temp, Seed: 1, Scan: ScanPruned}
		b.Run(rank, func(b *testing.B) {
			var st dualmem.ScanStats
			cpu0 := cpuTime()
			for b.Loop() {
				a, err := e.Generate(context.Background(), req)
				if err != nil {
					b.Fatal(err)
				}
				st = a.Tokens[0].Layers[lm.OutLayer].Scan.ScanStats
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(st.BytesRead)/float64(st.BytesTotal), "bytes-frac")
			b.ReportMetric(float64(st.BlocksRead)/float64(st.BlocksTotal), "blocks-frac")
		})
	}
}

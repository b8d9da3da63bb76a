package lm

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// influenceBenchRun is a trained run for the benchmark, with a snapshot after every step.
type influenceBenchRun struct {
	tr    *Trainer
	snaps map[int][]byte
	train time.Duration // the training steps alone, compile included, snapshots excluded
}

var influenceBenchRuns = map[string]*influenceBenchRun{}

func benchRun(b *testing.B, name string, cfg Config) *influenceBenchRun {
	if r, ok := influenceBenchRuns[name]; ok {
		return r
	}
	tr, err := NewTrainer(cfg, testText(200000))
	if err != nil {
		b.Fatal(err)
	}
	r := &influenceBenchRun{tr: tr, snaps: map[int][]byte{}}
	for s := 0; ; s++ {
		if r.snaps[s], err = tr.Checkpoint(); err != nil {
			b.Fatal(err)
		}
		if s == cfg.Steps {
			break
		}
		start := time.Now()
		if _, err := tr.TrainStep(tr.BatchAt(s + 1)); err != nil {
			b.Fatal(err)
		}
		r.train += time.Since(start)
	}
	influenceBenchRuns[name] = r
	return r
}

// peakHeap samples the Go heap (where the simplego backend keeps every tensor) until stop.
func peakHeap() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	done, wg := make(chan struct{}), sync.WaitGroup{}
	wg.Go(func() {
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	return func() uint64 { close(done); wg.Wait(); return peak - base }
}

// BenchmarkInfluence times one influence pass (one query batch) over a whole run, as a
// multiple of the run's training time (x_train), with the heap it adds at its peak. Snapshots
// "every k" means the pass replays each k-step segment and holds its k weight states; k=1
// replays nothing. The tiny preset cases take several minutes: select them with -bench.
func BenchmarkInfluence(b *testing.B) {
	tiny, _ := Preset("tiny")
	tiny.Steps, tiny.CheckpointEvery = 300, 100
	for _, c := range []struct {
		run   string
		cfg   Config
		every int
		q     int
		f64   bool
	}{
		{"test-model", influenceConfig(30), 1, 1, false},
		{"test-model", influenceConfig(30), 1, 4, false},
		{"test-model", influenceConfig(30), 6, 4, false},
		{"test-model", influenceConfig(30), 30, 4, false},
		{"test-model", influenceConfig(30), 30, 4, true},
		{"tiny-300", tiny, 1, 1, false},
		{"tiny-300", tiny, 1, 4, false},
		{"tiny-300", tiny, 20, 4, false},
	} {
		name := fmt.Sprintf("%s/every%d/q%d", c.run, c.every, c.q)
		if c.f64 {
			name += "/float64"
		}
		b.Run(name, func(b *testing.B) {
			r := benchRun(b, c.run, c.cfg)
			snaps := map[int][]byte{}
			for s := 0; s <= c.cfg.Steps; s += c.every {
				snaps[s] = r.snaps[s]
			}
			snaps[c.cfg.Steps] = r.snaps[c.cfg.Steps]
			queries, targets := r.tr.HeldOut(c.q)
			var res *InfluenceResult
			var peak uint64
			start := time.Now()
			for b.Loop() {
				stop := peakHeap()
				var err error
				res, err = r.tr.InfluenceRun(context.Background(), queries, targets, snaps,
					InfluenceOptions{Float64: c.f64, QueryBatch: c.q})
				peak = max(peak, stop())
				if err != nil {
					b.Fatal(err)
				}
			}
			pass := time.Since(start) / time.Duration(b.N)
			b.ReportMetric(pass.Seconds()/r.train.Seconds(), "x_train")
			b.ReportMetric(r.train.Seconds(), "train_s")
			b.ReportMetric(float64(peak)/(1<<20), "peak_MiB")
			b.ReportMetric(float64(res.MaxKept), "states_kept")
			b.ReportMetric(float64(res.Replayed), "replayed_steps")
		})
	}
}

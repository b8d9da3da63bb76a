package dualmem

import (
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotlight-lm/spotlight/lm"
)

// smallMeta is the layer list of the `small` preset (d=128, 2 blocks, a 91-symbol vocabulary),
// whose capture `spotlight bench train` times.
func smallMeta() Meta {
	m := testMeta(F32)
	m.Layers = []LayerSpec{{Name: "block0.ff1", DIn: 128, DOut: 512}, {Name: "block0.ff2", DIn: 512, DOut: 128},
		{Name: "block1.ff1", DIn: 128, DOut: 512}, {Name: "block1.ff2", DIn: 512, DOut: 128}, {Name: "out", DIn: 128, DOut: 91}}
	return m
}

// BenchmarkAppendStep writes steps of the small preset's shape (32 rows of 64 tokens, as
// sparse behind the ReLUs as in training) and commits every 100, as training does; cpu-ms/op
// is the process CPU time per step, what capture takes from training on a machine whose
// cores training keeps busy, and commit-ms/op the time spent in Commit (waiting for the
// writes and syncs) per step. "train" leaves the derived files out, as spotlight train does;
// "train-dense" does so in a format-1 store, which stores no array sparse; "derived" writes
// the derived files.
func BenchmarkAppendStep(b *testing.B) {
	for _, bc := range []struct {
		name        string
		skipDerived bool
		format      int
	}{{"train", true, FormatVersion}, {"train-dense", true, 1}, {"derived", false, FormatVersion}} {
		b.Run(bc.name, func(b *testing.B) { benchAppendStep(b, bc.skipDerived, bc.format) })
	}
}

func benchAppendStep(b *testing.B, skipDerived bool, format int) {
	rng := rand.New(rand.NewPCG(1, 2))
	meta := smallMeta()
	s, err := Create(b.TempDir(), meta, []byte("to be or not to be"), testInitial(meta, rng), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.meta.Format = format // only the writer's choice of records; the stored metadata stays
	if skipDerived {
		if err := s.SkipDerived(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	tmpl := makeStep(meta, 1, 32, 64, rng)
	reluSparse(tmpl, 0.6, rng)
	var bytes int64
	for _, ls := range tmpl.Layers {
		bytes += 4 * int64(len(ls.Keys)+len(ls.Grads))
	}
	b.SetBytes(bytes)
	cpu0 := cpuTime()
	var commits time.Duration
	b.ResetTimer()
	for i := range b.N {
		st := *tmpl
		st.Step = i + 1
		if err := s.AppendStep(&st); err != nil {
			b.Fatal(err)
		}
		if st.Step%100 == 0 || i == b.N-1 {
			t0 := time.Now()
			if err := s.Commit(st.Step, make([]byte, 1<<20)); err != nil {
				b.Fatal(err)
			}
			commits += time.Since(t0)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(commits)/1e6/float64(b.N), "commit-ms/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reluSparse makes the arrays behind each block's ReLU as sparse as training makes them: a
// share zeros of ff2's keys and ff1's gradients are ±0 (50-83% in the small preset's first
// 200 steps).
func reluSparse(st *lm.Step, zeros float64, rng *rand.Rand) {
	for name, ls := range st.Layers {
		switch {
		case strings.HasSuffix(name, ".ff1"):
			ls.Grads = reluLike(rng, len(ls.Grads), zeros)
		case strings.HasSuffix(name, ".ff2"):
			ls.Keys = reluLike(rng, len(ls.Keys), zeros)
		}
		st.Layers[name] = ls
	}
}

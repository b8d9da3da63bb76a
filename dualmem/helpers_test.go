package dualmem

import (
	"math/rand/v2"
	"os"
	"testing"

	"github.com/spotlight-lm/spotlight/internal/filemem"
	"github.com/spotlight-lm/spotlight/lm"
)

func testMeta(p Precision) Meta {
	return Meta{
		Precision: p,
		Layers:    []LayerSpec{{Name: "block0.ff1", DIn: 4, DOut: 7}, {Name: "out", DIn: 5, DOut: 3}},
		Optimizer: lm.Optimizer{Momentum: 0.9, WeightDecay: 0.01, BiasDecay: 0},
		Config:    []byte(`{"d":4}`),
	}
}

func randF32(rng *rand.Rand, n int, scale float64) []float32 {
	xs := make([]float32, n)
	for i := range xs {
		v := 0.1 + 0.9*rng.Float64() // magnitudes within a decade: f16 keeps them to 2^-11
		if rng.IntN(2) == 0 {
			v = -v
		}
		xs[i] = float32(v * scale)
	}
	return xs
}

func testInitial(meta Meta, rng *rand.Rand) map[string]lm.Initial {
	in := map[string]lm.Initial{}
	for _, l := range meta.Layers {
		in[l.Name] = lm.Initial{W: randF32(rng, l.DIn*l.DOut, 0.5), B: randF32(rng, l.DOut, 0.1)}
	}
	return in
}

// makeStep builds step t with random keys (around 1e3) and tiny gradients (around 1e-7,
// below float16's normal range unless scaled).
func makeStep(meta Meta, t, rows, ctx int, rng *rand.Rand) *lm.Step {
	n := rows * ctx
	st := &lm.Step{StepInfo: lm.StepInfo{Step: t, LR: 0.1 / float32(t), Clip: 0.5 + float32(t)/100,
		Loss: 3 - float32(t)/10, Rows: rows, Ctx: ctx}, Layers: map[string]lm.LayerStep{}}
	for i := range n {
		st.Offsets = append(st.Offsets, int64(1000*t+i))
		st.Targets = append(st.Targets, int32(rng.IntN(60)))
	}
	for _, l := range meta.Layers {
		st.Layers[l.Name] = lm.LayerStep{Keys: randF32(rng, n*l.DIn, 1e3), Grads: randF32(rng, n*l.DOut, 1e-7)}
	}
	return st
}

func mustCreate(t *testing.T, dir string, meta Meta, rng *rand.Rand) *Store {
	t.Helper()
	s, err := Create(dir, meta, []byte("to be or not to be"), testInitial(meta, rng), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// reopenReadOnly closes s and opens dir read-only, closed when the test ends.
func reopenReadOnly(t *testing.T, s *Store, dir string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func appendSteps(t *testing.T, s *Store, from, to int, rng *rand.Rand) []*lm.Step {
	t.Helper()
	var out []*lm.Step
	for i := from; i <= to; i++ {
		st := makeStep(s.Meta(), i, 1+i%3, 4, rng)
		if err := s.AppendStep(st); err != nil {
			t.Fatalf("AppendStep(%d): %v", i, err)
		}
		out = append(out, st)
	}
	return out
}

// closeEnough compares float32 slices exactly (tol 0) or to a relative tolerance.
func closeEnough(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		d := float64(got[i]) - float64(want[i])
		if d < 0 {
			d = -d
		}
		w := float64(want[i])
		if w < 0 {
			w = -w
		}
		if d > tol*w {
			t.Fatalf("%s[%d] = %g, want %g", what, i, got[i], want[i])
		}
	}
}

// TestMain maps every per-token index into a file (filemem), however small, so that the
// tests read them the way a large memory does.
func TestMain(m *testing.M) {
	filemem.MinMapped = 1
	os.Exit(m.Run())
}

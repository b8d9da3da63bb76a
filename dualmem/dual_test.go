package dualmem

import (
	"math"
	"math/rand/v2"
	"testing"
)

// warmupCosine is a typical schedule: linear warmup, then cosine decay to 10% of peak.
func warmupCosine(t, warmup, total int, peak float64) float32 {
	if t <= warmup {
		return float32(peak * float64(t) / float64(warmup))
	}
	p := float64(t-warmup) / float64(total-warmup)
	return float32(peak * (0.1 + 0.9*0.5*(1+math.Cos(math.Pi*p))))
}

// simulateLinear trains one linear layer by PyTorch SGD semantics in float64 on float32
// keys and gradients, returning the steps (for the store) and the final W, b.
func simulateLinear(meta Meta, init Initial, steps int, rng *rand.Rand) ([]*Step, []float64, []float64) {
	l := meta.Layers[0]
	w, b := make([]float64, len(init.W)), make([]float64, len(init.B))
	for i, v := range init.W {
		w[i] = float64(v)
	}
	for i, v := range init.B {
		b[i] = float64(v)
	}
	bufW, bufB := make([]float64, len(w)), make([]float64, len(b))
	var out []*Step
	for t := 1; t <= steps; t++ {
		rows, ctx := 2, 3
		n := rows * ctx
		st := &Step{StepInfo: StepInfo{Step: t, LR: warmupCosine(t, 5, steps, 0.3),
			Clip: float32(0.3 + 0.7*rng.Float64()), Rows: rows, Ctx: ctx},
			Offsets: make([]int64, n), Targets: make([]int32, n)}
		keys, grads := randF32(rng, n*l.DIn, 1), randF32(rng, n*l.DOut, 1/float64(n))
		st.Layers = map[string]LayerStep{l.Name: {Keys: keys, Grads: grads}}
		gw, gb := make([]float64, len(w)), make([]float64, len(b))
		for i := range n {
			for k := range l.DIn {
				for j := range l.DOut {
					gw[k*l.DOut+j] += float64(keys[i*l.DIn+k]) * float64(grads[i*l.DOut+j])
				}
			}
			for j := range l.DOut {
				gb[j] += float64(grads[i*l.DOut+j])
			}
		}
		c, lr := float64(st.Clip), float64(st.LR)
		sgdStep(w, bufW, gw, c, lr, meta.Momentum, meta.WeightDecay)
		sgdStep(b, bufB, gb, c, lr, meta.Momentum, meta.BiasDecay)
		out = append(out, st)
	}
	return out, w, b
}

func TestDualReconstructsTrainedLayer(t *testing.T) {
	for _, tc := range []struct {
		p   Precision
		tol float64
	}{{F32, 1e-6}, {F16, 3e-3}} {
		t.Run(string(tc.p), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, 12))
			meta := Meta{Precision: tc.p, Layers: []LayerSpec{{Name: "out", DIn: 6, DOut: 5}},
				Momentum: 0.9, WeightDecay: 0.05, BiasDecay: 0.01}
			init := testInitial(meta, rng)
			steps, w, b := simulateLinear(meta, init["out"], 20, rng)
			s, err := Create(t.TempDir(), meta, []byte("abc"), init, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, st := range steps {
				if err := s.AppendStep(st); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Commit(len(steps), nil); err != nil {
				t.Fatal(err)
			}
			m, err := s.LoadLayer("out", nil)
			if err != nil {
				t.Fatal(err)
			}
			for range 5 {
				x := randF32(rng, 6, 1)
				if e := relErr(m.Reconstruct(meta, x), primal(x, w, b)); e > tc.tol {
					t.Fatalf("dual vs primal: relative error %g > %g", e, tc.tol)
				} else {
					t.Logf("relative error %.2g", e)
				}
			}
		})
	}
}

func TestDualWithoutSteps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 3))
	meta := testMeta(F32)
	init := testInitial(meta, rng)
	m := newLayerMemory(meta.Layers[1], nil)
	m.Initial = init["out"]
	w := make([]float64, len(m.Initial.W))
	for i, v := range m.Initial.W {
		w[i] = float64(v)
	}
	b := make([]float64, len(m.Initial.B))
	for i, v := range m.Initial.B {
		b[i] = float64(v)
	}
	x := randF32(rng, 5, 1)
	if e := relErr(m.Reconstruct(meta, x), primal(x, w, b)); e > 1e-15 {
		t.Fatalf("initial layer: relative error %g", e)
	}
}

// primal is x·W + b for W [len(x), len(b)].
func primal(x []float32, w, b []float64) []float64 {
	y := append([]float64(nil), b...)
	for k, xk := range x {
		for j := range y {
			y[j] += float64(xk) * w[k*len(b)+j]
		}
	}
	return y
}

func relErr(got, want []float64) float64 {
	var d, n float64
	for j := range want {
		d += (got[j] - want[j]) * (got[j] - want[j])
		n += want[j] * want[j]
	}
	return math.Sqrt(d / n)
}

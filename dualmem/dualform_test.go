package dualmem

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"

	"github.com/spotlight-lm/spotlight/lm"
)

// sgdStep applies one PyTorch SGD step (momentum mu, coupled weight decay lambda) in place.
func sgdStep(w, buf, grad []float64, clip, lr, mu, lambda float64) {
	for j := range w {
		d := clip*grad[j] + lambda*w[j]
		buf[j] = mu*buf[j] + d
		w[j] -= lr * buf[j]
	}
}

func TestCoefficientsMatchSGD(t *testing.T) {
	cases := []struct {
		name       string
		mu, lambda float64
		steps      int
	}{
		{"plain", 0, 0, 30},
		{"momentum", 0.9, 0, 30},
		{"decay", 0, 0.05, 30},
		{"both", 0.9, 0.01, 40},
		{"strong", 0.5, 0.3, 25},
		{"one step", 0.9, 0.1, 1},
		{"no steps", 0.9, 0.1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.steps)))
			const n = 12 // a 3×4 matrix, flattened
			w0 := make([]float64, n)
			for j := range w0 {
				w0[j] = rng.NormFloat64()
			}
			w := append([]float64(nil), w0...)
			buf := make([]float64, n)
			lr := make([]float64, tc.steps)
			clip := make([]float64, tc.steps)
			grads := make([][]float64, tc.steps)
			for s := range tc.steps {
				lr[s] = 0.01 + 0.2*rng.Float64()
				clip[s] = 0.2 + 0.8*rng.Float64()
				grads[s] = make([]float64, n)
				for j := range grads[s] {
					grads[s][j] = rng.NormFloat64()
				}
				sgdStep(w, buf, grads[s], clip[s], lr[s], tc.mu, tc.lambda)
			}
			a, beta := Coefficients(lr, tc.mu, tc.lambda)
			if len(beta) != tc.steps {
				t.Fatalf("len(beta) = %d, want %d", len(beta), tc.steps)
			}
			if tc.steps == 0 && a != 1 {
				t.Fatalf("a = %v for T=0, want 1", a)
			}
			for j := range w {
				dual := a * w0[j]
				for s := range tc.steps {
					dual += beta[s] * clip[s] * grads[s][j]
				}
				if d := math.Abs(dual - w[j]); d > 1e-12 {
					t.Fatalf("entry %d: primal %v dual %v (diff %g)", j, w[j], dual, d)
				}
			}
		})
	}
}

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
func simulateLinear(meta Meta, init lm.Initial, steps int, rng *rand.Rand) ([]*lm.Step, []float64, []float64) {
	l := meta.Layers[0]
	w, b := make([]float64, len(init.W)), make([]float64, len(init.B))
	for i, v := range init.W {
		w[i] = float64(v)
	}
	for i, v := range init.B {
		b[i] = float64(v)
	}
	bufW, bufB := make([]float64, len(w)), make([]float64, len(b))
	var out []*lm.Step
	for t := 1; t <= steps; t++ {
		rows, ctx := 2, 3
		n := rows * ctx
		st := &lm.Step{StepInfo: lm.StepInfo{Step: t, LR: warmupCosine(t, 5, steps, 0.3),
			Clip: float32(0.3 + 0.7*rng.Float64()), Rows: rows, Ctx: ctx},
			Offsets: make([]int64, n), Targets: make([]int32, n)}
		keys, grads := randF32(rng, n*l.DIn, 1), randF32(rng, n*l.DOut, 1/float64(n))
		st.Layers = map[string]lm.LayerStep{l.Name: {Keys: keys, Grads: grads}}
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
		sgdStep(w, bufW, gw, c, lr, meta.Optimizer.Momentum, meta.Optimizer.WeightDecay)
		sgdStep(b, bufB, gb, c, lr, meta.Optimizer.Momentum, meta.Optimizer.BiasDecay)
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
				Optimizer: lm.Optimizer{Momentum: 0.9, WeightDecay: 0.05, BiasDecay: 0.01}}
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

// recorder keeps captured steps in memory: lm.Memory without the store.
type recorder struct {
	steps     []*lm.Step
	committed int
}

func (r *recorder) AppendStep(st *lm.Step) error { r.steps = append(r.steps, st); return nil }
func (r *recorder) Commit(step int, _ []byte) error {
	r.committed = step
	return nil
}

// The dual form of every captured layer of a real training run must reproduce its primal
// output; the coefficients are computed here from the recorded steps, independently of
// NewDualForm.
func TestTrainDualIdentity(t *testing.T) {
	c, _ := lm.Preset("tiny")
	c.D, c.Heads, c.Ctx, c.Batch, c.Steps, c.Warmup, c.CheckpointEvery = 16, 2, 16, 4, 12, 3, 5
	c.LR, c.WeightDecay = 0.2, 1e-3
	tr, err := lm.NewTrainer(c, string(corpora.Default()[:20000]))
	if err != nil {
		t.Fatal(err)
	}
	init := tr.Initial()
	rec := &recorder{}
	defer tr.Close()
	if err := tr.Train(context.Background(), rec, tr.Cfg.Steps, nil); err != nil {
		t.Fatal(err)
	}
	if len(rec.steps) != tr.Cfg.Steps || rec.committed != tr.Cfg.Steps {
		t.Fatalf("captured %d steps, committed %d", len(rec.steps), rec.committed)
	}
	contexts, targets := tr.HeldOut(3)
	probes, err := tr.Probe(contexts, targets)
	if err != nil {
		t.Fatal(err)
	}
	lrs := make([]float64, len(rec.steps))
	for i, st := range rec.steps {
		lrs[i] = float64(st.LR)
	}
	aW, betaW := Coefficients(lrs, tr.Cfg.Momentum, tr.Cfg.WeightDecay)
	aB, betaB := Coefficients(lrs, tr.Cfg.Momentum, 0)
	for _, l := range tr.Cfg.LayerTable() {
		layer, din, dout := l.Name, l.DIn, l.DOut
		for _, p := range probes {
			x, y := p.Layers[layer].X, p.Layers[layer].Y
			dual := make([]float64, dout)
			for j := range dout {
				dual[j] = aB * float64(init[layer].B[j])
				for i := range din {
					dual[j] += aW * float64(x[i]) * float64(init[layer].W[i*dout+j])
				}
			}
			for s, st := range rec.steps {
				ls := st.Layers[layer]
				for tok := range len(st.Targets) {
					var alpha float64
					for i := range din {
						alpha += float64(ls.Keys[tok*din+i]) * float64(x[i])
					}
					for j := range dout {
						g := float64(ls.Grads[tok*dout+j]) * float64(st.Clip)
						dual[j] += (betaW[s]*alpha + betaB[s]) * g
					}
				}
			}
			var maxAbs, maxY float64
			for j := range dout {
				maxAbs = math.Max(maxAbs, math.Abs(dual[j]-float64(y[j])))
				maxY = math.Max(maxY, math.Abs(float64(y[j])))
			}
			t.Logf("%s: max abs err %.3g, rel %.3g (max y %.3g)", layer, maxAbs, maxAbs/maxY, maxY)
			if maxAbs/maxY > 1e-5 {
				t.Errorf("%s: max abs err %.3g, rel %.3g", layer, maxAbs, maxAbs/maxY)
			}
		}
	}
}

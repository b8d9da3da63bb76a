package lm

import (
	"context"
	"math"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/dualmem"
)

// recorder keeps captured steps in memory, standing in for the Badger store in unit tests.
type recorder struct {
	steps     []*dualmem.Step
	committed int
	ckpt      []byte
}

func (r *recorder) AppendStep(st *dualmem.Step) error { r.steps = append(r.steps, st); return nil }
func (r *recorder) Commit(step int, ckpt []byte) error {
	r.committed, r.ckpt = step, ckpt
	return nil
}

// testText is the start of the embedded corpus, Newton's Opticks.
func testText(n int) string { return string(corpora.Default()[:n]) }

func tinyConfig() Config {
	c, _ := Preset("tiny")
	c.D, c.Heads, c.Ctx, c.Batch, c.Steps, c.Warmup, c.CheckpointEvery = 16, 2, 16, 4, 12, 3, 5
	c.LR, c.WeightDecay = 0.2, 1e-3
	return c
}

// The dual form of every captured layer must reproduce its primal output.
func TestTrainDualIdentity(t *testing.T) {
	tr, err := NewTrainer(tinyConfig(), testText(20000))
	if err != nil {
		t.Fatal(err)
	}
	init := tr.Initial()
	rec := &recorder{}
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
	aW, betaW := dualmem.Coefficients(lrs, tr.Cfg.Momentum, tr.Cfg.WeightDecay)
	aB, betaB := dualmem.Coefficients(lrs, tr.Cfg.Momentum, 0)
	for _, layer := range tr.Cfg.LayerNames() {
		din, dout, _ := tr.Cfg.LayerDims(layer)
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

// Greedy generation (forward pass only) picks what the probe's logits rank first.
func TestGenerateMatchesProbe(t *testing.T) {
	tr, err := NewTrainer(tinyConfig(), testText(20000))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Train(context.Background(), &recorder{}, 6, nil); err != nil {
		t.Fatal(err)
	}
	prompt, err := tr.Tok.Encode("The light of the Sun")
	if err != nil {
		t.Fatal(err)
	}
	gen, err := tr.Generate(prompt, 5, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	seq := append([]int32{}, prompt...)
	for i, tok := range gen {
		ps, err := tr.Probe([][]int32{seq}, []int32{tok})
		if err != nil {
			t.Fatal(err)
		}
		if want := Sample(ps[0].Logits, 0, nil); tok != want {
			t.Errorf("token %d: generated %d, probe's argmax %d", i, tok, want)
		}
		seq = append(seq, tok)
	}
	if _, err := tr.Generate(nil, 1, 0, 1); err == nil {
		t.Error("empty prompt accepted")
	}
}

package lm

import (
	"context"
	"math"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
)

// recorder keeps captured steps in memory, standing in for the Badger store in unit tests.
type recorder struct {
	steps     []*Step
	committed int
	ckpt      []byte
}

func (r *recorder) AppendStep(st *Step) error { r.steps = append(r.steps, st); return nil }
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

// Greedy generation (forward pass only) picks what the probe's logits rank first.
func TestGenerateMatchesProbe(t *testing.T) {
	tr := trainedTiny(t, 6)
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

// SplitLoss is the mean, over every token of the held-out split's whole batches, of the
// −log p the model gives it after the earlier characters of its window.
func TestSplitLossIsMeanOverHeldOutTokens(t *testing.T) {
	text := testText(3000) // 300 held-out tokens: 4 batches of 4×16, 44 left over
	tr, err := NewTrainer(tinyConfig(), text)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Train(context.Background(), &recorder{}, 4, nil); err != nil {
		t.Fatal(err)
	}
	got, n, err := tr.SplitLoss()
	if err != nil {
		t.Fatal(err)
	}
	c := tr.Cfg
	corpus := tr.Tok.EncodeCorpus(text)
	start := trainSplit(len(corpus))
	if want := (len(corpus) - start - 1) / (c.Batch * c.Ctx) * c.Batch * c.Ctx; n != want || n == 0 {
		t.Fatalf("averaged %d tokens, want %d", n, want)
	}
	var contexts [][]int32
	var targets []int32
	for w := start; w < start+n; w += c.Ctx {
		for i := range c.Ctx {
			contexts = append(contexts, corpus[w:w+i+1])
			targets = append(targets, corpus[w+i+1])
		}
	}
	ps, err := tr.Probe(contexts, targets)
	if err != nil {
		t.Fatal(err)
	}
	var want float64
	for i, p := range ps {
		want -= logSoftmaxAt(p.Logits, targets[i])
	}
	want /= float64(len(ps))
	if d := math.Abs(got - want); d > 1e-5*math.Max(1, want) {
		t.Errorf("SplitLoss %.7f, mean over the probes %.7f", got, want)
	}
	ck, err := tr.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadModel(ck)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if again, n2, err := m.SplitLoss(text); err != nil || again != got || n2 != n {
		t.Errorf("Model.SplitLoss = %v, %d, %v; the trainer's %v, %d", again, n2, err, got, n)
	}
	short, err := NewTrainer(tinyConfig(), testText(600))
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if l, n, err := short.SplitLoss(); err != nil || n != 0 || !math.IsNaN(l) {
		t.Errorf("a held-out split shorter than a batch: %v over %d tokens, %v", l, n, err)
	}
}

func logSoftmaxAt(logits []float32, target int32) float64 {
	mx := math.Inf(-1)
	for _, l := range logits {
		mx = math.Max(mx, float64(l))
	}
	var z float64
	for _, l := range logits {
		z += math.Exp(float64(l) - mx)
	}
	return float64(logits[target]) - mx - math.Log(z)
}

// trainedTiny is a tiny model trained for steps on the test text (closed with the test).
func trainedTiny(t *testing.T, steps int) *Trainer {
	t.Helper()
	tr, err := NewTrainer(tinyConfig(), testText(20000))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	if err := tr.Train(context.Background(), &recorder{}, steps, nil); err != nil {
		t.Fatal(err)
	}
	return tr
}

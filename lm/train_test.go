package lm

import (
	"context"
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

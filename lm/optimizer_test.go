package lm

import (
	"math"
	"strings"
	"testing"
)

// Each parameter's decay follows from its class: weights and embeddings get WeightDecay,
// linear biases BiasDecay (0), LayerNorm nothing. The dual form of the bias assumes this.
func TestOptimizerDecayByClass(t *testing.T) {
	c := tinyConfig()
	c.Vocab, c.Blocks = 30, 2
	opt := c.Optimizer()
	if opt.BiasDecay != 0 || opt.WeightDecay != c.WeightDecay || opt.Momentum != c.Momentum || opt.Clip != c.Clip {
		t.Fatalf("optimizer %+v does not match config", opt)
	}
	norms := map[string]bool{"lnf": true}
	for b := range c.Blocks {
		norms[blockName(b)+".ln1"], norms[blockName(b)+".ln2"] = true, true
	}
	for _, p := range paramSpecs(c) {
		prefix := p.Name[:max(0, strings.LastIndexByte(p.Name, '.'))]
		var want ParamClass
		switch {
		case norms[prefix]:
			want = NormParam
		case strings.HasSuffix(p.Name, ".b"):
			want = BiasParam
		default:
			want = WeightParam
		}
		if p.Class != want {
			t.Errorf("%s: class %q, want %q", p.Name, p.Class, want)
		}
		wantDecay := map[ParamClass]float64{WeightParam: c.WeightDecay, BiasParam: 0, NormParam: 0}[want]
		if got := opt.Decay(p.Class); got != wantDecay {
			t.Errorf("%s: decay %g, want %g", p.Name, got, wantDecay)
		}
	}
}

// The schedule warms up linearly, decays by a cosine to MinLRFrac·LR and stays there.
func TestScheduleAt(t *testing.T) {
	s := Schedule{LR: 0.3, Warmup: 10, MinLRFrac: 0.1, Steps: 110}
	for _, tc := range []struct {
		step int
		want float64
	}{{1, 0.03}, {10, 0.3}, {60, 0.3 * (0.1 + 0.9*0.5)}, {110, 0.03}, {500, 0.03}} {
		if got := s.At(tc.step); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("step %d: lr %g, want %g", tc.step, got, tc.want)
		}
	}
}

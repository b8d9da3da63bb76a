package lm

import (
	"context"
	"math"
	"testing"
)

// The margin and log p probes are the logit probe's gradients combined: ∂(logit_t −
// logit_r)/∂y = DY_t − DY_r and ∂log p_t/∂y = DY_t − Σ_c p_c DY_c.
func TestProbeObjectives(t *testing.T) {
	tr, err := NewTrainer(tinyConfig(), testText(20000))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Train(context.Background(), &recorder{}, 6, nil); err != nil {
		t.Fatal(err)
	}
	ctx, err := tr.Tok.Encode("The light of th")
	if err != nil {
		t.Fatal(err)
	}
	target, _ := tr.Tok.ID('e')
	V := tr.Cfg.Vocab
	contexts, targets := make([][]int32, V), make([]int32, V)
	for c := range V {
		contexts[c], targets[c] = ctx, int32(c)
	}
	byLogit, err := tr.Probe(contexts, targets)
	if err != nil {
		t.Fatal(err)
	}
	margin, err := tr.ProbeFor([][]int32{ctx}, []int32{target}, ObjMargin)
	if err != nil {
		t.Fatal(err)
	}
	logp, err := tr.ProbeFor([][]int32{ctx}, []int32{target}, ObjLogP)
	if err != nil {
		t.Fatal(err)
	}
	r := margin[0].RunnerUp
	if r == target || r != byLogit[target].RunnerUp {
		t.Fatalf("runner-up %d (target %d, logit probe's %d)", r, target, byLogit[target].RunnerUp)
	}
	for c, l := range margin[0].Logits {
		if int32(c) != target && l > margin[0].Logits[r] {
			t.Fatalf("runner-up %d has logit %g below token %d's %g", r, margin[0].Logits[r], c, l)
		}
	}
	p := Probabilities(byLogit[0].Logits, 1)
	for _, l := range tr.Cfg.LayerTable() {
		dt, dr := byLogit[target].Layers[l.Name].DY, byLogit[r].Layers[l.Name].DY
		for o := range dt {
			want := float64(dt[o]) - float64(dr[o])
			if got := float64(margin[0].Layers[l.Name].DY[o]); math.Abs(got-want) > 1e-5*(1+math.Abs(want)) {
				t.Fatalf("%s margin dy[%d] = %g, want %g", l.Name, o, got, want)
			}
			want = float64(dt[o])
			for c := range V {
				want -= p[c] * float64(byLogit[c].Layers[l.Name].DY[o])
			}
			if got := float64(logp[0].Layers[l.Name].DY[o]); math.Abs(got-want) > 1e-4*(1+math.Abs(want)) {
				t.Fatalf("%s log p dy[%d] = %g, want %g", l.Name, o, got, want)
			}
		}
	}
}

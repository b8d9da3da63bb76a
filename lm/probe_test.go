package lm

import (
	"math"
	"slices"
	"testing"
)

// The margin and log p probes are the logit probe's gradients combined: ∂(logit_t −
// logit_r)/∂y = DY_t − DY_r and ∂log p_t/∂y = DY_t − Σ_c p_c DY_c.
func TestProbeObjectives(t *testing.T) {
	tr := trainedTiny(t, 6)
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

// GenerateProbed's logits and layer inputs are Probe's at each generated token's context,
// bit for bit, and its tokens are Generate's.
func TestGenerateProbedIsProbe(t *testing.T) {
	tr := trainedTiny(t, 6)
	for _, tc := range []struct {
		prompt string
		n      int
		temp   float64
	}{{"The light of th", 12, 0.8}, {"T", 3, 0}, {"A long prompt that fills more than the whole context window of the tiny model", 5, 1}} {
		prompt, err := tr.Tok.Encode(tc.prompt)
		if err != nil {
			t.Fatal(err)
		}
		want, err := tr.Generate(prompt, tc.n, tc.temp, 3)
		if err != nil {
			t.Fatal(err)
		}
		var seen []int32 // each's tokens, in its calls' order
		gen, got, err := tr.GenerateProbed(prompt, tc.n, tc.temp, 3, func(i int, tok int32, p Probe) {
			if i != len(seen) || len(p.Logits) != tr.Tok.Size() {
				t.Errorf("%q: call %d for token %d, %d logits", tc.prompt, len(seen), i, len(p.Logits))
			}
			seen = append(seen, tok)
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(gen, want) || len(got) != tc.n || !slices.Equal(seen, gen) {
			t.Fatalf("%q: generated %v with %d probes (each saw %v), Generate %v", tc.prompt, gen, len(got), seen, want)
		}
		seq := append(append([]int32{}, prompt...), gen...)
		contexts := make([][]int32, tc.n)
		for i := range contexts {
			contexts[i] = seq[:len(prompt)+i]
		}
		probes, err := tr.Probe(contexts, gen)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range probes {
			if !slices.Equal(got[i].Logits, p.Logits) || got[i].RunnerUp != -1 {
				t.Fatalf("%q token %d: logits or runner-up differ from the probe's", tc.prompt, i)
			}
			for name, l := range p.Layers {
				if g := got[i].Layers[name]; !slices.Equal(g.X, l.X) || g.Y != nil || g.DY != nil {
					t.Fatalf("%q token %d layer %s: x differs from the probe's", tc.prompt, i, name)
				}
			}
		}
	}
}

package lm

import (
	"maps"
	"math"
	"slices"
	"testing"
)

// Every captured tensor of a train step and every probed tensor must have its own layer's
// widths: a graph output list that drifted from its layout would hand one layer another's
// vectors (ff1 and ff2 swap widths, and out is V wide).
func TestOutputsMatchLayerTable(t *testing.T) {
	c := tinyConfig()
	c.Blocks = 2
	tr, err := NewTrainer(c, testText(20000))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	st, err := tr.TrainStep(tr.BatchAt(1))
	if err != nil {
		t.Fatal(err)
	}
	table := tr.Cfg.LayerTable()
	if got, want := len(table), 2*c.Blocks+1; got != want {
		t.Fatalf("layer table has %d layers, want %d", got, want)
	}
	n := st.Tokens()
	if n != c.Batch*c.Ctx || len(st.Targets) != n {
		t.Fatalf("step has %d tokens (%d targets), want %d", n, len(st.Targets), c.Batch*c.Ctx)
	}
	if got, want := slices.Sorted(maps.Keys(st.Layers)), slices.Sorted(slices.Values(tr.Cfg.CapturedLayers())); !slices.Equal(got, want) {
		t.Fatalf("captured layers %v, want %v", got, want)
	}
	for _, l := range table {
		ls, ok := st.Layers[l.Name]
		if !ok {
			t.Errorf("%s: not captured", l.Name)
			continue
		}
		if len(ls.Keys) != n*l.DIn || len(ls.Grads) != n*l.DOut {
			t.Errorf("%s: %d keys, %d grads floats; want %d×%d, %d×%d", l.Name, len(ls.Keys), len(ls.Grads), n, l.DIn, n, l.DOut)
		}
		if l.Exact != (l.Name == OutLayer) {
			t.Errorf("%s: Exact = %v", l.Name, l.Exact)
		}
	}
	// Values, where layers tie them down: each token's gradient of out, softmax minus
	// one-hot over the mean, sums to zero.
	out := table[len(table)-1]
	for i := range n {
		var sum, abs float64
		for _, g := range st.Layers[out.Name].Grads[i*out.DOut : (i+1)*out.DOut] {
			sum, abs = sum+float64(g), abs+math.Abs(float64(g))
		}
		if math.Abs(sum) > 1e-5*abs {
			t.Fatalf("token %d: out's gradient sums to %g (Σ|g| %g)", i, sum, abs)
		}
	}
	ctxs, targets := tr.HeldOut(3)
	probes, err := tr.Probe(ctxs, targets)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probes {
		if len(p.Logits) != tr.Cfg.Vocab {
			t.Errorf("logits have %d values, want %d", len(p.Logits), tr.Cfg.Vocab)
		}
		for _, l := range table {
			lp := p.Layers[l.Name]
			if len(lp.X) != l.DIn || len(lp.Y) != l.DOut || len(lp.DY) != l.DOut {
				t.Errorf("%s probe: x %d, y %d, dy %d; want %d, %d, %d", l.Name, len(lp.X), len(lp.Y), len(lp.DY), l.DIn, l.DOut, l.DOut)
			}
		}
		// out's output is the logits; ff2's input is relu of ff1's output.
		if !slices.Equal(p.Layers[OutLayer].Y, p.Logits) {
			t.Error("out's probed output differs from the logits")
		}
		for b := range c.Blocks {
			y1, x2 := p.Layers[FFLayer(b, 1)].Y, p.Layers[FFLayer(b, 2)].X
			for i := range x2 {
				if want := max(y1[i], 0); x2[i] != want {
					t.Fatalf("block %d: ff2 input %d is %g, relu(ff1 output) %g", b, i, x2[i], want)
				}
			}
		}
	}
}

package lm

import (
	"slices"
	"testing"
)

// A step's vectors are the backend's buffers, not copies: they must stay intact while later
// steps run and release theirs (which the backend then reuses), until the step itself is
// released.
func TestStepHoldsItsBuffers(t *testing.T) {
	tr, err := NewTrainer(tinyConfig(), testText(20000))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	first, err := tr.TrainStep(tr.BatchAt(1))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]LayerStep{}
	for name, ls := range first.Layers {
		want[name] = LayerStep{Keys: slices.Clone(ls.Keys), Grads: slices.Clone(ls.Grads)}
	}
	for step := 2; step <= 4; step++ {
		st, err := tr.TrainStep(tr.BatchAt(step))
		if err != nil {
			t.Fatal(err)
		}
		st.Release()
		if st.Layers != nil {
			t.Fatal("a released step still lists its vectors")
		}
	}
	if len(first.Layers) != len(tr.Cfg.CapturedLayers()) {
		t.Fatalf("%d layers captured, want %d", len(first.Layers), len(tr.Cfg.CapturedLayers()))
	}
	for name, ls := range first.Layers {
		if !slices.Equal(ls.Keys, want[name].Keys) || !slices.Equal(ls.Grads, want[name].Grads) {
			t.Fatalf("%s: step 1's vectors changed while later steps ran", name)
		}
	}
	first.Release()
	hand := &Step{Layers: map[string]LayerStep{"out": {Keys: []float32{1}}}}
	hand.Release()
	if hand.Layers["out"].Keys[0] != 1 {
		t.Fatal("Release changed a step built by hand")
	}
}

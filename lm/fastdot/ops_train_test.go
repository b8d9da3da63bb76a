package fastdot_test

import (
	"context"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/lm/fastdot"
)

// trainRunOps trains a fresh tiny model with the fast element-wise/reduction ops on or off.
func trainRunOps(t *testing.T, fast bool, steps int) (*recorder, float64) {
	t.Helper()
	c, err := lm.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	c.D, c.Heads, c.Ctx, c.Batch, c.Steps, c.Warmup, c.CheckpointEvery = 32, 2, 24, 6, steps, 2, 1000
	c.LR, c.WeightDecay = 0.1, 1e-3
	tr, err := lm.NewTrainer(c, string(corpora.Default()[:20000]))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if !fastdot.OpsEnabled() && fast {
		t.Skip("fast ops not enabled (SPOTLIGHT_FASTOPS=0 or SPOTLIGHT_FASTDOT=0?)")
	}
	prev := fastdot.SetOpsEnabled(fast)
	defer fastdot.SetOpsEnabled(prev)
	calls := fastdot.OpsCalls()
	rec := &recorder{}
	if err := tr.Train(context.Background(), rec, steps, nil); err != nil {
		t.Fatal(err)
	}
	loss, err := tr.EvalLoss()
	if err != nil {
		t.Fatal(err)
	}
	if ran := fastdot.OpsCalls() > calls; ran != fast {
		t.Fatalf("fast ops ran=%v, want %v", ran, fast)
	}
	return rec, loss
}

// The fast ops are bit-identical to simplego's, so training follows exactly the same trajectory.
func TestTrainSameWithAndWithoutOps(t *testing.T) {
	if testing.Short() {
		t.Skip("trains twice")
	}
	const steps = 6
	slow, slowLoss := trainRunOps(t, false, steps)
	fast, fastLoss := trainRunOps(t, true, steps)
	for i := range slow.steps {
		s, f := slow.steps[i], fast.steps[i]
		if s.Loss != f.Loss || s.Clip != f.Clip {
			t.Errorf("step %d loss %g vs %g, clip %g vs %g", i+1, f.Loss, s.Loss, f.Clip, s.Clip)
		}
		var worst float64
		for name, sl := range s.Layers {
			fl := f.Layers[name]
			worst = max(worst, maxRelDiff(fl.Keys, sl.Keys), maxRelDiff(fl.Grads, sl.Grads))
		}
		if worst != 0 {
			t.Errorf("step %d: captured keys/grads differ by %.2g (relative to max)", i+1, worst)
		}
	}
	if slowLoss != fastLoss {
		t.Errorf("held-out loss after %d steps %g vs %g", steps, fastLoss, slowLoss)
	}
	t.Logf("held-out loss %g vs %g", fastLoss, slowLoss)
}

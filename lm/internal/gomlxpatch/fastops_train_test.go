package gomlxpatch_test

import "testing"

// The fast ops are bit-identical to simplego's, so training follows exactly the same trajectory.
func TestTrainSameWithAndWithoutOps(t *testing.T) {
	if testing.Short() {
		t.Skip("trains twice")
	}
	const steps = 6
	slow, slowLoss := trainRun(t, opsSwitch, false, steps)
	fast, fastLoss := trainRun(t, opsSwitch, true, steps)
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

package gomlxpatch_test

import (
	"context"
	"math"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/lm/internal/gomlxpatch"
)

type recorder struct{ steps []*lm.Step }

func (r *recorder) AppendStep(st *lm.Step) error { r.steps = append(r.steps, st); return nil }
func (r *recorder) Commit(int, []byte) error     { return nil }

// trainSwitch is one of the executors' switches as the training tests drive it; unavailable is
// called when the switch is off but a fast run is wanted.
type trainSwitch struct {
	what        string // in failure messages
	enabled     func() bool
	set         func(bool) bool
	calls       func() int64
	unavailable func(t *testing.T)
}

var (
	dotSwitch = trainSwitch{"fast kernel", gomlxpatch.FastDotEnabled, gomlxpatch.SetFastDot, gomlxpatch.FastDotCalls,
		func(t *testing.T) {
			t.Helper()
			t.Fatalf("fast DotGeneral not installed by lm's backend (kernel %s)", gomlxpatch.KernelName())
		}}
	opsSwitch = trainSwitch{"fast ops", gomlxpatch.FastOpsEnabled, gomlxpatch.SetFastOps, gomlxpatch.FastOpsCalls,
		func(t *testing.T) {
			t.Helper()
			t.Skip("fast ops not enabled (SPOTLIGHT_FASTOPS=0 or SPOTLIGHT_FASTDOT=0?)")
		}}
)

// trainRun trains a fresh tiny model with sw on or off.
func trainRun(t *testing.T, sw trainSwitch, fast bool, steps int) (*recorder, float64) {
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
	if !sw.enabled() && fast {
		sw.unavailable(t)
	}
	prev := sw.set(fast)
	defer sw.set(prev)
	calls := sw.calls()
	rec := &recorder{}
	if err := tr.Train(context.Background(), rec, steps, nil); err != nil {
		t.Fatal(err)
	}
	loss, err := tr.EvalLoss()
	if err != nil {
		t.Fatal(err)
	}
	if ran := sw.calls() > calls; ran != fast {
		t.Fatalf("%s ran=%v, want %v", sw.what, ran, fast)
	}
	return rec, loss
}

func maxRelDiff(a, b []float32) float64 {
	var maxAbs, maxDiff float64
	for i := range a {
		maxAbs = math.Max(maxAbs, math.Abs(float64(b[i])))
		maxDiff = math.Max(maxDiff, math.Abs(float64(a[i])-float64(b[i])))
	}
	return maxDiff / math.Max(maxAbs, 1e-30)
}

// Training with the fast kernel follows the same trajectory as with simplego's: same losses,
// same captured layer inputs and gradients (which depend on all parameters), same final loss.
func TestTrainSameWithAndWithout(t *testing.T) {
	if testing.Short() {
		t.Skip("trains twice")
	}
	const steps = 8
	slow, slowLoss := trainRun(t, dotSwitch, false, steps)
	fast, fastLoss := trainRun(t, dotSwitch, true, steps)
	for i := range slow.steps {
		s, f := slow.steps[i], fast.steps[i]
		if d := math.Abs(float64(s.Loss-f.Loss)) / float64(s.Loss); d > 1e-5 {
			t.Errorf("step %d loss %g vs %g (rel %.2g)", i+1, f.Loss, s.Loss, d)
		}
		if d := math.Abs(float64(s.Clip - f.Clip)); d > 1e-5 {
			t.Errorf("step %d clip %g vs %g", i+1, f.Clip, s.Clip)
		}
		var worst float64
		for name, sl := range s.Layers {
			fl := f.Layers[name]
			worst = max(worst, maxRelDiff(fl.Keys, sl.Keys), maxRelDiff(fl.Grads, sl.Grads))
		}
		if worst > 1e-5 {
			t.Errorf("step %d: captured keys/grads differ by %.2g (relative to max)", i+1, worst)
		}
		if i == len(slow.steps)-1 {
			t.Logf("step %d: loss %g vs %g; captured vectors max rel diff %.2g", i+1, f.Loss, s.Loss, worst)
		}
	}
	if d := math.Abs(slowLoss-fastLoss) / slowLoss; d > 1e-5 {
		t.Errorf("held-out loss after %d steps %g vs %g (rel %.2g)", steps, fastLoss, slowLoss, d)
	}
	t.Logf("held-out loss %g vs %g", fastLoss, slowLoss)
}

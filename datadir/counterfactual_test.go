package datadir

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// trainKeeping trains a tiny model to step 12, committing every 2 steps, keeping every 4th.
func trainKeeping(t *testing.T) string {
	t.Helper()
	cfg := tinyConfig(t)
	cfg.Steps, cfg.CheckpointEvery, cfg.Layers = 12, 2, []string{lm.OutLayer}
	path := filepath.Join(t.TempDir(), "d")
	dir, tr, err := Create(path, cfg, corpora.Default()[:20000])
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	defer tr.Close()
	dir.Store.SetKeepEvery(4)
	if err := tr.Train(context.Background(), dir.Store, cfg.Steps, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRetrain(t *testing.T) {
	dir, err := Open(trainKeeping(t), true)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	st, err := dir.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var kept []int
	for _, k := range st.Kept {
		kept = append(kept, k.Step)
	}
	if !slices.Equal(kept, []int{0, 4, 8, 12}) || st.KeptBytes <= 0 {
		t.Errorf("stats: kept %v, %d bytes", kept, st.KeptBytes)
	}
	sn, err := dir.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	const text, pos = "the light of the sun", 12
	req := query.DefaultAttribute()
	req.Text, req.TopK, req.Layers = text, 10, []string{lm.OutLayer}
	ans, err := sn.Engine.AttributeAt(context.Background(), req, []int{pos})
	if err != nil {
		t.Fatal(err)
	}
	served := ans.Tokens[0]
	la := served.Layers[lm.OutLayer]
	var top []TrainToken
	for _, e := range la.Top {
		top = append(top, TrainToken{Step: e.Step, Row: e.Row, Pos: e.Pos})
	}
	if len(top) != 10 || la.CounterfactualProb == nil {
		t.Fatalf("attribution: %d entries, counterfactual %v", len(top), la.CounterfactualProb)
	}

	// Nothing removed: the replay from step 8 reproduces the model exactly.
	var calls, last int
	same, err := dir.Retrain(context.Background(), sn.Step, text, pos, nil, func(done, total int) { calls, last = calls+1, done })
	if err != nil {
		t.Fatal(err)
	}
	if same.From != 8 || same.Replayed != 4 || calls != 4 || last != 4 {
		t.Errorf("replay from %d, %d steps, progress %d calls to %d", same.From, same.Replayed, calls, last)
	}
	if d := math.Abs(same.LogP - math.Log(served.Prob)); d != 0 {
		t.Errorf("nothing removed: |Δlog p| = %g, want 0 (retrained %g, served %g)", d, same.Prob, served.Prob)
	}

	// The top 10 removed: both numbers, and the memory's equals the engine's.
	pred, err := sn.Predict(text, pos, top)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(pred-*la.CounterfactualProb) > 1e-12 {
		t.Errorf("Predict %g, engine %g", pred, *la.CounterfactualProb)
	}
	cf, err := sn.Counterfactual(context.Background(), Question{Text: text, Position: pos, TopK: 10})
	if err != nil || !slices.Equal(cf.Removed, top) || cf.Predicted != *la.CounterfactualProb || cf.Prob != served.Prob {
		t.Errorf("Counterfactual: %+v, %v", cf, err)
	}
	if _, err := sn.Counterfactual(context.Background(), Question{Text: text, Position: pos}); !errors.Is(err, ErrRetrainInput) {
		t.Errorf("nothing to remove: %v", err)
	}
	real, err := dir.Retrain(context.Background(), sn.Step, text, pos, top, nil)
	if err != nil {
		t.Fatal(err)
	}
	earliest := slices.MinFunc(top, func(a, b TrainToken) int { return a.Step - b.Step }).Step
	if real.From >= earliest || real.From < earliest-5 || real.Removed != 10 || real.Prob <= 0 || real.Prob >= 1 || real.Prob == served.Prob {
		t.Errorf("top 10 removed: %+v (earliest removed step %d, served %g)", real, earliest, served.Prob)
	}
	t.Logf("p %.6g; final weights minus the top 10's updates %.6g; retrained without them %.6g (%.2fs from step %d)",
		served.Prob, pred, real.Prob, real.Seconds, real.From)

	// Bad requests change nothing and say what is wrong.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := dir.Retrain(ctx, sn.Step, text, pos, top, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	for _, bad := range []struct {
		pos    int
		remove []TrainToken
	}{
		{0, nil}, {len(text), nil}, {pos, []TrainToken{{Step: 13}}}, {pos, []TrainToken{{Step: 1, Row: 4}}},
		{pos, []TrainToken{{Step: 1, Pos: -1}}},
	} {
		if _, err := dir.Retrain(context.Background(), sn.Step, text, bad.pos, bad.remove, nil); !errors.Is(err, ErrRetrainInput) {
			t.Errorf("position %d, remove %v: %v", bad.pos, bad.remove, err)
		}
	}
}

// A directory written before checkpoints were kept replays from a rebuilt step 0: it must
// be the one the run began with.
func TestRebuiltStepZero(t *testing.T) {
	dir, err := Open(trainKeeping(t), true)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	_, stored, err := dir.Store.CheckpointAt(0)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := lm.NewTrainer(dir.Cfg, string(dir.Corpus()))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rebuilt, err := tr.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if string(rebuilt) != string(stored) {
		t.Errorf("rebuilt step-0 checkpoint (%d bytes) differs from the stored one (%d bytes)", len(rebuilt), len(stored))
	}
}

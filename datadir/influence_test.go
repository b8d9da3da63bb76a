package datadir

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/lm"
)

// TestInfluence checks the served scores against lm.Trainer.Influence run on snapshots of
// an independent in-memory replay of the same run (steps 0, 4, 8, 12).
func TestInfluence(t *testing.T) {
	dir, err := Open(trainKeeping(t), true)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	const text, pos, k = "the light of the sun", 12, 5
	if c, err := dir.CachedInfluence(12, text, pos, k); c != nil || err != nil {
		t.Fatalf("cached before any run: %v, %v", c, err)
	}
	var calls, last, total int
	ans, err := dir.Influence(context.Background(), 12, text, pos, k, func(d, n int) { calls, last, total = calls+1, d, n })
	if err != nil {
		t.Fatal(err)
	}
	// 12 steps reversed, and 10 replayed forward: 3, 3 and 4 from the snapshots at 0, 4, 8.
	if calls != 22 || last != 22 || total != 22 {
		t.Errorf("progress: %d calls, last %d of %d, want 22 of 22", calls, last, total)
	}
	cfg := dir.Cfg
	perStep := cfg.Batch * cfg.Ctx
	if ans.Step != 12 || ans.Token != " " || !slices.Equal(ans.Snapshots, []int{0, 4, 8, 12}) || ans.Scored != 12*perStep ||
		ans.Cached || len(ans.Top) != k || len(ans.Supporting) != k || len(ans.Opposing) != k {
		t.Fatalf("answer: step %d token %q snapshots %v scored %d cached %v, %d/%d/%d tokens",
			ans.Step, ans.Token, ans.Snapshots, ans.Scored, ans.Cached, len(ans.Top), len(ans.Supporting), len(ans.Opposing))
	}

	tr, err := lm.NewTrainer(cfg, string(corpora.Default()[:20000]))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	snaps := map[int][]byte{}
	for {
		if tr.Step%4 == 0 {
			ck, err := tr.Checkpoint()
			if err != nil {
				t.Fatal(err)
			}
			snaps[tr.Step] = ck
		}
		if tr.Step == 12 {
			break
		}
		if _, err := tr.TrainStep(tr.BatchAt(tr.Step + 1)); err != nil {
			t.Fatal(err)
		}
	}
	contexts, target, err := Target(tr.Tok, text, pos)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tr.Influence(context.Background(), [][]int32{contexts}, []int32{target}, snaps)
	if err != nil {
		t.Fatal(err)
	}
	scores := want[0]
	check := func(name string, got []InfluenceToken, key func(float64) float64) {
		idx := topIndices(scores, k, key)
		for r, i := range idx {
			g := got[r]
			j := i % perStep
			b := tr.BatchAt(i/perStep + 1)
			if g.Step != i/perStep+1 || g.Row != j/cfg.Ctx || g.Pos != j%cfg.Ctx || g.Score != scores[i] ||
				g.DeltaLoss != -scores[i] || g.Offset != b.Offsets[j] || g.Target != tr.Tok.DecodeOne(b.Targets[j]) ||
				len([]rune(g.Context)) != min(g.Pos+1, int(g.Offset)) {
				t.Errorf("%s[%d] = %+v, want step %d row %d pos %d offset %d score %g", name, r, g,
					i/perStep+1, j/cfg.Ctx, j%cfg.Ctx, b.Offsets[j], scores[i])
			}
		}
	}
	check("top", ans.Top, math.Abs)
	check("supporting", ans.Supporting, func(x float64) float64 { return -x })
	check("opposing", ans.Opposing, func(x float64) float64 { return x })
	var sum float64
	for _, e := range ans.Top {
		sum -= e.Score
	}
	if math.Abs(ans.DeltaLossTop-sum) > 1e-12 || ans.Supporting[0].Score >= 0 || ans.Opposing[0].Score <= 0 {
		t.Errorf("Δloss top %g, want %g; supporting[0] %g, opposing[0] %g",
			ans.DeltaLossTop, sum, ans.Supporting[0].Score, ans.Opposing[0].Score)
	}

	// The same question again is answered from the cache, without progress.
	calls = 0
	again, err := dir.Influence(context.Background(), 12, text, pos, 2, func(int, int) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || calls != 0 || len(again.Top) != 2 || again.Top[1] != ans.Top[1] {
		t.Errorf("second ask: cached %v, %d progress calls, top %v", again.Cached, calls, again.Top)
	}
	if c, err := dir.CachedInfluence(12, text, pos, 3); err != nil || c == nil || !c.Cached || c.Top[2] != ans.Top[2] || c.Loss != ans.Loss {
		t.Errorf("CachedInfluence after the run: %+v, %v", c, err)
	}
	if _, err := dir.CachedInfluence(12, text, 99, 3); !errors.Is(err, ErrRetrainInput) {
		t.Errorf("CachedInfluence of a position outside the text: %v", err)
	}

	// A kept step earlier than the last: snapshots 0, 4, 8.
	early, err := dir.Influence(context.Background(), 8, text, pos, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(early.Snapshots, []int{0, 4, 8}) || early.Scored != 8*perStep {
		t.Errorf("step 8: snapshots %v, %d scored", early.Snapshots, early.Scored)
	}
}

func TestInfluenceBadInput(t *testing.T) {
	dir, err := Open(trainKeeping(t), true)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for _, c := range []struct {
		name       string
		step       int
		text       string
		pos, top   int
		wantSubstr string
	}{
		{"position past the text", 12, "the sun", 7, 5, "position 7 outside 1..6"},
		{"position 0", 12, "the sun", 0, 5, "position 0 outside"},
		{"unknown character", 12, "the \x01sun", 3, 5, "not in the vocabulary"},
		{"top k 0", 12, "the sun", 3, 0, "top k 0 outside 1..1000"},
		{"top k too big", 12, "the sun", 3, 1001, "top k 1001 outside 1..1000"},
		{"step not committed", 13, "the sun", 3, 5, "step 13 is not committed (1..12)"},
		{"step 0", 0, "the sun", 3, 5, "step 0 is not committed"},
		{"step without checkpoint", 6, "the sun", 3, 5, "step 6 has no checkpoint: ask about a kept one (0, 4, 8, 12) or the last, 12"},
	} {
		_, err := dir.Influence(context.Background(), c.step, c.text, c.pos, c.top, nil)
		if !errors.Is(err, ErrRetrainInput) || !strings.Contains(err.Error(), c.wantSubstr) {
			t.Errorf("%s: err %v, want ErrRetrainInput with %q", c.name, err, c.wantSubstr)
		}
	}
}

// The cache keeps the influenceCacheSize most recently used runs.
func TestInfluenceCache(t *testing.T) {
	var c influenceCache
	key := func(i int) influenceKey { return influenceKey{step: i, text: "x", position: 1} }
	for i := range influenceCacheSize {
		c.put(&influenceRun{key: key(i)})
	}
	if c.get(key(0)) == nil { // 0 is now the most recent; 1 the least
		t.Fatal("run 0 missing")
	}
	c.put(&influenceRun{key: key(influenceCacheSize)})
	if c.get(key(1)) != nil || c.get(key(0)) == nil || c.get(key(influenceCacheSize)) == nil || c.runs().Len() != influenceCacheSize {
		t.Errorf("after one more: %d runs, run 1 kept %v", c.runs().Len(), c.get(key(1)) != nil)
	}
	c.put(&influenceRun{key: key(0), loss: 7})
	if r := c.get(key(0)); r == nil || r.loss != 7 || c.runs().Len() != influenceCacheSize {
		t.Errorf("replacing run 0: %v, %d runs", r, c.runs().Len())
	}
}

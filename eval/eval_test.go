package eval

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/lm"
)

func smallConfig(steps int) lm.Config {
	c, _ := lm.Preset("tiny")
	c.D, c.Heads, c.Ctx, c.Batch, c.Steps, c.Warmup = 16, 2, 32, 8, steps, 20
	return c
}

func TestPlantCanaries(t *testing.T) {
	base := string(corpora.Default()[:20000])
	text, facts, err := PlantCanaries(base, 5, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	runes := []rune(text)
	trainLen := int(float64(len(runes)) * (1 - lm.HeldOutFrac))
	for _, f := range facts {
		if len(f.Spans) != 3 {
			t.Fatalf("%s: %d occurrences", f.Text, len(f.Spans))
		}
		for _, s := range f.Spans {
			if got := string(runes[s[0]:s[1]]); got != f.Text {
				t.Fatalf("span %v holds %q, want %q", s, got, f.Text)
			}
			if s[1] > int64(trainLen) {
				t.Fatalf("occurrence at %v is in the held-out split (%d)", s, trainLen)
			}
		}
		if !strings.HasSuffix(f.Prefix(), "code is ") {
			t.Fatalf("prefix %q", f.Prefix())
		}
	}
	if _, err := lm.NewTokenizer(text); err != nil {
		t.Fatal(err)
	}
}

func TestStats(t *testing.T) {
	x := []float64{1, 2, 3, 4, 5}
	y := []float64{1, 4, 9, 16, 100}
	if s := Spearman(x, y); math.Abs(s-1) > 1e-12 {
		t.Fatalf("spearman %v", s)
	}
	if p := Pearson(x, y); p >= 1 || p < 0.7 {
		t.Fatalf("pearson %v", p)
	}
	if r := ranks([]float64{3, 1, 3, 2}); r[0] != 3.5 || r[1] != 1 || r[2] != 3.5 || r[3] != 2 {
		t.Fatalf("ranks %v", r)
	}
	if b, _ := json.Marshal(Num(math.NaN())); string(b) != "null" {
		t.Fatalf("NaN marshals as %s", b)
	}
}

// A small end-to-end run: planted facts must be found far more often than chance, the
// memory must rebuild the logits, and a retrain with nothing masked must repeat the run.
func TestEvalSmall(t *testing.T) {
	opts := Options{
		Data:          filepath.Join(t.TempDir(), "data"),
		Corpus:        string(corpora.Default()[:20000]),
		Config:        smallConfig(120),
		Canaries:      6,
		Reps:          4,
		Queries:       2,
		RetrainKs:     []int{5},
		SnapshotEvery: 20,
		Workers:       2,
		Seed:          1,
		Log:           t.Logf,
	}
	rep, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.Table(opts))
	rc := rep.Canaries.Recall
	for _, v := range views() {
		if _, ok := rc[v.name()]["10"]; !ok {
			t.Errorf("no recall for view %s", v.name())
		}
	}
	dv := rep.Canaries.Default
	if c, r := float64(dv.R10), float64(rc["random"]["10"]); dv.Name != defaultView().name() || c < r+0.5 {
		t.Errorf("recall@10 of the default view %s %.3f does not beat random %.3f by 0.5", dv.Name, c, r)
	}
	if n := rep.Canaries.Chars; n["all"] != 6*4 || n["predicted"]+n["unpredicted"] != n["all"] {
		t.Errorf("code characters %v", n)
	}
	if rep.Detail.DualMaxAbsErr > 1e-3 {
		t.Errorf("memory rebuilds the logit only to %.3g", rep.Detail.DualMaxAbsErr)
	}
	if d := float64(rep.ReproduceMaxAbsDLogp); d > 1e-4 {
		t.Errorf("a retrain with nothing masked changes log p by up to %.3g", d)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	_ = json.Unmarshal(b, &doc)
	for _, key := range []string{"canaries", "retrain", "reproduce_max_abs_dlogp"} {
		if _, ok := doc[key]; !ok {
			t.Errorf("JSON lacks %q: %s", key, b)
		}
	}
	t.Logf("%s", b)
}

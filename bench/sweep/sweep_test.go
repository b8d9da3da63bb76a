package sweep

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// tileSource trains a tiny model (d=16) for steps steps into a new data directory and
// opens its out layer for tiling.
func tileSource(t *testing.T, steps int) *TileSource {
	t.Helper()
	cfg, err := lm.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.D, cfg.Heads, cfg.Ctx, cfg.Batch, cfg.Steps, cfg.Warmup, cfg.CheckpointEvery = 16, 2, 32, 8, steps, 3, 10
	d, tr, err := datadir.Create(filepath.Join(t.TempDir(), "src"), cfg, corpora.Default()[:20000])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	defer tr.Close()
	if err := tr.Train(context.Background(), d.Store, steps, nil); err != nil {
		t.Fatal(err)
	}
	ts, err := OpenTileSource(d.Store, "out")
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// answers opens dir as the measuring process does and answers one request per shape.
func answers(t *testing.T, dir string) map[string]*query.Answer {
	t.Helper()
	d, err := datadir.Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	model, err := d.Model()
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	model.Step = d.Steps()
	e, err := d.Engine(model, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Scanner("out").HasAggregates(); err != nil {
		t.Fatal(err)
	}
	temp := query.DefaultTemperature
	out := map[string]*query.Answer{}
	for _, scan := range query.ScanModes {
		for _, rank := range []string{query.RankContribution, query.RankAttention} {
			a, err := e.Generate(context.Background(), query.Request{Prompt: "The rays", Tokens: 6, TopK: 10,
				GroupBy: query.GroupToken, Layers: []string{"out"}, Temperature: &temp, Seed: 1, Scan: scan, RankBy: rank})
			if err != nil {
				t.Fatal(err)
			}
			out[scan+"/"+rank] = a
		}
	}
	return out
}

// The synthetic segments-only memory answers every request shape exactly as the memory
// built through the store's whole write path from the same tiled data, and on it the
// pruned search finds the full scan's top lists.
func TestSegmentsOnlyAnswersAsStorePath(t *testing.T) {
	ts := tileSource(t, 30)
	dirs := map[bool]string{}
	for _, only := range []bool{false, true} {
		dirs[only] = filepath.Join(t.TempDir(), "tiled")
		steps, err := BuildTiled(context.Background(), ts, dirs[only], 20000, only, nil)
		if err != nil || steps < 2*29 {
			t.Fatalf("segments-only %v: %d steps, %v", only, steps, err)
		}
	}
	full, synth := answers(t, dirs[false]), answers(t, dirs[true])
	for shape, a := range full {
		if path := differs(jsonOf(t, a), jsonOf(t, synth[shape]), shape); path != "" {
			t.Errorf("the segments-only answer differs from the store path's at %s", path)
		}
	}
	for _, rank := range []string{query.RankContribution, query.RankAttention} {
		f, p := synth[query.ScanFull+"/"+rank], synth[query.ScanPruned+"/"+rank]
		if f.Text != p.Text {
			t.Fatalf("%s: texts %q and %q", rank, f.Text, p.Text)
		}
		for i := range f.Tokens {
			ft, pt := f.Tokens[i].Layers["out"], p.Tokens[i].Layers["out"]
			if len(ft.Top) == 0 || len(ft.Top) != len(pt.Top) || pt.Scan.BytesRead >= ft.Scan.BytesRead {
				t.Fatalf("%s token %d: %d and %d top entries, read %d and %d bytes", rank, i, len(ft.Top), len(pt.Top), pt.Scan.BytesRead, ft.Scan.BytesRead)
			}
			for j := range ft.Top {
				fe, pe := ft.Top[j], pt.Top[j]
				if fe.Step != pe.Step || fe.Row != pe.Row || fe.Pos != pe.Pos || math.Abs(fe.Contribution-pe.Contribution) > 1e-5*math.Abs(fe.Contribution)+1e-12 {
					t.Errorf("%s token %d #%d: full %+v, pruned %+v", rank, i, j, fe, pe)
				}
			}
		}
	}
}

func jsonOf(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// differs is the path of the first difference between two decoded JSON documents, "" if
// none; numbers may differ by float64 rounding (parallel sums add in any order).
func differs(a, b any, path string) string {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(bm) != len(a) {
			return path
		}
		for k, v := range a {
			if p := differs(v, bm[k], path+"."+k); p != "" {
				return p
			}
		}
	case []any:
		bs, ok := b.([]any)
		if !ok || len(bs) != len(a) {
			return path
		}
		for i := range a {
			if p := differs(a[i], bs[i], fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	case float64:
		bf, ok := b.(float64)
		if !ok || math.Abs(a-bf) > 1e-12*math.Max(math.Abs(a), 1) {
			return fmt.Sprintf("%s (%v, %v)", path, a, b)
		}
	default:
		if a != b {
			return fmt.Sprintf("%s (%v, %v)", path, a, b)
		}
	}
	return ""
}

// The estimate that decides when a size is built segments-only counts the database copy
// only for the store path, and is not below what the build writes.
func TestTileBytes(t *testing.T) {
	ts := tileSource(t, 12)
	for _, only := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "tiled")
		if _, err := BuildTiled(context.Background(), ts, dir, 50000, only, nil); err != nil {
			t.Fatal(err)
		}
		segs, err := dualmem.DiskUsage(filepath.Join(dir, dualmem.SegmentsDir))
		if err != nil {
			t.Fatal(err)
		}
		// Within 5%: at d=16 the per-target blocks' boxes weigh more than in real layers.
		if est := tileBytes(ts.meta, 50000, only); float64(est) < 0.95*float64(segs) {
			t.Errorf("segments-only %v: estimate %d bytes, the segment files alone %d", only, est, segs)
		}
	}
	if a, b := tileBytes(ts.meta, 1000, false), tileBytes(ts.meta, 1000, true); a-b != 1000*4*int64(ts.meta.Layers[0].DIn+ts.meta.Layers[0].DOut) {
		t.Errorf("store path %d, segments only %d bytes", a, b)
	}
}

func TestParseSizes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{"1M,4M,200K,5000", []int{1_000_000, 4_000_000, 200_000, 5000}, false},
		{" 64M ", []int{64_000_000}, false},
		{"", nil, false},
		{"4X", nil, true}, {"0", nil, true}, {"-1K", nil, true}, {"1M,,2M", nil, true},
	} {
		got, err := ParseSizes(c.in)
		if (err != nil) != c.bad || len(got) != len(c.want) {
			t.Errorf("%q: %v, %v", c.in, got, err)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%q: %v, want %v", c.in, got, c.want)
			}
		}
	}
}

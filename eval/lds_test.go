package eval

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

func TestRunLDS(t *testing.T) {
	text := string(corpora.Default()[:40000])
	for _, cross := range []bool{false, true} {
		rep, err := RunLDS(context.Background(), LDSOptions{Corpus: text, Config: smallConfig(40), Subsets: 6,
			Queries: 6, Checkpoints: 2, CrossSeed: cross, Seed: 3, Bootstrap: 200, Singles: 1, Influence: !cross, SkipAllParams: cross})
		if err != nil {
			t.Fatal(err)
		}
		if rep.ReproduceMaxAbsDLoss != 0 {
			t.Fatalf("cross=%v: a rerun with nothing dropped moved the loss by %v", cross, rep.ReproduceMaxAbsDLoss)
		}
		if !(rep.NoiseFloor > 0) || !(rep.MeanAbsDLoss > 0) {
			t.Fatalf("cross=%v: retrains without 1%% of the data changed nothing: %+v", cross, rep)
		}
		if !(rep.SingleDLoss >= 0) {
			t.Fatalf("cross=%v: single-unit retrain gave %v", cross, rep.SingleDLoss)
		}
		if got, want := rep.Unit, map[bool]string{false: "token", true: "offset"}[cross]; got != want {
			t.Fatalf("unit %q, want %q", got, want)
		}
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Queries, Subsets int
			Drop             float64
			NoiseFloor       *float64 `json:"noise_floor"`
			Methods          []map[string]any
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Queries != 6 || doc.Subsets != 6 || doc.Drop != 0.01 || doc.NoiseFloor == nil || len(doc.Methods) < 10 {
			t.Fatalf("document %s", b)
		}
		var names, rows []string
		for _, m := range doc.Methods {
			for _, k := range []string{"name", "layers", "lds", "ci", "seconds"} {
				if _, ok := m[k]; !ok {
					t.Fatalf("method %v lacks %q", m, k)
				}
			}
			names = append(names, m["name"].(string))
			rows = append(rows, m["name"].(string)+" over "+m["layers"].(string))
		}
		linear := strings.Join(rep.Config.LayerNames(), ",")
		for _, want := range []string{"grad-dot over " + linear, "tracin-cp over " + linear, "grad-dot over out", "tracin-cp over out"} {
			if !slices.Contains(rows, want) {
				t.Fatalf("methods %v lack %q", rows, want)
			}
		}
		for _, all := range []string{"grad-dot over all parameters", "tracin-cp over all parameters"} {
			if slices.Contains(rows, all) == cross { // the cross-seed run skips them
				t.Fatalf("cross=%v: methods %v, %q", cross, rows, all)
			}
		}
		wants := []string{"spotlight log p", "grad-dot", "tracin-cp", "random"}
		if !cross {
			wants = append(wants, "influence (exact metagradient)")
		}
		for _, want := range wants {
			if !slices.Contains(names, want) {
				t.Fatalf("methods %v lack %q", names, want)
			}
		}
		for _, m := range rep.Methods {
			if l := float64(m.LDS); math.IsNaN(l) || l < -1 || l > 1 || m.CI[0] > m.LDS || m.CI[1] < m.LDS {
				t.Fatalf("%s: LDS %v outside [-1, 1] or its interval %v", m.Name, m.LDS, m.CI)
			}
		}
		if !strings.Contains(rep.Table(), "spotlight log p") {
			t.Fatal(rep.Table())
		}
	}
}

// --noise-only retrains and measures the noise floor as the full run does, scoring nothing.
func TestLDSNoiseOnly(t *testing.T) {
	text := string(corpora.Default()[:40000])
	o := LDSOptions{Corpus: text, Config: smallConfig(30), Subsets: 4, Queries: 4, Seed: 3, Bootstrap: 200, Singles: 1}
	full, err := RunLDS(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	o.NoiseOnly = true
	only, err := RunLDS(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(only); !strings.Contains(string(b), `"methods":[]`) {
		t.Errorf("noise-only document %s", b)
	}
	if len(only.Methods) != 0 || !math.IsNaN(float64(only.ReproduceMaxAbsDLoss)) {
		t.Fatalf("noise-only scored %d methods, reproduce %v", len(only.Methods), only.ReproduceMaxAbsDLoss)
	}
	if only.NoiseFloor != full.NoiseFloor || only.SingleDLoss != full.SingleDLoss || only.SplitLoss != full.SplitLoss || !(only.SplitLoss > 0) {
		t.Fatalf("noise-only: floor %v, single %v, split loss %v; full run: %v, %v, %v",
			only.NoiseFloor, only.SingleDLoss, only.SplitLoss, full.NoiseFloor, full.SingleDLoss, full.SplitLoss)
	}
}

func TestLDSBadOptions(t *testing.T) {
	for _, o := range []LDSOptions{{Subsets: 2}, {Drop: 1.5}, {Drop: -0.1}, {Queries: 1}, {Checkpoints: -1}, {Bootstrap: 10}, {Singles: -1}, {NoiseOnly: true, Influence: true}} {
		o.Corpus, o.Config = "x", smallConfig(10)
		if _, err := RunLDS(context.Background(), o); err == nil || !strings.HasPrefix(err.Error(), "lds: ") {
			t.Fatalf("%+v: err %v", o, err)
		}
	}
}

// Spotlight's per-token scores are the dual memory's own: for the logit at out they equal the
// stored memory's exact contribution (Scanner.Score) of every token to every query.
func TestSpotlightScoresAreTheMemorys(t *testing.T) {
	text := string(corpora.Default()[:40000])
	cfg := smallConfig(12)
	base, err := trainRun(context.Background(), cfg, text)
	if err != nil {
		t.Fatal(err)
	}
	defer base.tr.Close()
	dir, tr, err := datadir.Create(filepath.Join(t.TempDir(), "d"), cfg, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	defer tr.Close()
	if err := tr.Train(context.Background(), dir.Store, cfg.Steps, nil); err != nil {
		t.Fatal(err)
	}
	eng, err := query.NewEngine(tr.Model, dir.Store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	sc := eng.Scanner(lm.OutLayer)
	cs, ts := base.tr.HeldOut(3)
	ps, err := probeAll(base.tr, cs, ts, lm.ObjLogit)
	if err != nil {
		t.Fatal(err)
	}
	form := dualmem.NewDualForm(base.infos, base.tr.Cfg.Optimizer())
	n, Q := cfg.Batch*cfg.Ctx, len(cs)
	score, alpha := make([]float64, n*Q), make([]float32, n*Q)
	checked := 0
	err = replay(context.Background(), base.tr, base.snaps, 1, nil, func(step int, _ *lm.Batch, st *lm.Step) {
		spotlightScores(base.tr.Cfg, st, ps, lm.ObjLogit, []string{lm.OutLayer}, form.SW[step-1], alpha, score)
		for j := range sc.N {
			if int(sc.Mem.Step[j]) != step {
				continue
			}
			i := int(sc.Mem.Rows[j])*cfg.Ctx + int(sc.Mem.Pos[j])
			for q := range Q {
				_, want := sc.Score(dualmem.Query{X: ps.X[lm.OutLayer][q*cfg.D : (q+1)*cfg.D], Token: int(ts[q])}, j)
				if got := score[i*Q+q]; math.Abs(got-want) > 1e-5*(1+math.Abs(want)) {
					t.Fatalf("step %d token %d query %d: score %v, memory's contribution %v", step, i, q, got, want)
				}
				checked++
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked != cfg.Steps*n*Q {
		t.Fatalf("checked %d scores, want %d", checked, cfg.Steps*n*Q)
	}
}

func TestSubsets(t *testing.T) {
	s := drawSubsets(200000, 5, 0.01, 9)
	for m, d := range s.drops {
		if len(d) < 1700 || len(d) > 2300 {
			t.Fatalf("subset %d drops %d of 200000 units, want about 2000", m, len(d))
		}
		if !slices.IsSorted(d) {
			t.Fatalf("subset %d not sorted", m)
		}
	}
	for u := range 200000 {
		of := s.subsetsOf(u)
		for m := range 5 {
			if s.has(m, u) != slices.Contains(of, int32(m)) {
				t.Fatalf("unit %d subset %d: has %v, index %v", u, m, s.has(m, u), of)
			}
		}
	}
	if again := drawSubsets(200000, 5, 0.01, 9); !slices.Equal(again.drops[3], s.drops[3]) {
		t.Fatal("subsets are not determined by the seed")
	}
}

func TestLDSScore(t *testing.T) {
	M, Q := 8, 5
	real, pred, neg := make([]float64, M*Q), make([]float64, M*Q), make([]float64, M*Q)
	for i := range real {
		real[i] = math.Sin(float64(i*i) + 1)
		pred[i], neg[i] = math.Exp(real[i]), -real[i]
	}
	if l, lo, hi := ldsScore(pred, real, M, Q, 500, 1); l != 1 || lo != 1 || hi != 1 {
		t.Fatalf("monotone prediction: LDS %v [%v, %v]", l, lo, hi)
	}
	if l, _, _ := ldsScore(neg, real, M, Q, 500, 1); math.Abs(l+1) > 1e-12 {
		t.Fatalf("reversed prediction: LDS %v", l)
	}
}

func TestLexicalSuffix(t *testing.T) {
	// One row of ctx 4; the query's context ends "ab" and its target is 3.
	lx := newLexical([]int32{0, 1, 2, 3, 0, 1, 2, 3}, 8, 4, [][]int32{{2, 2, 0, 1}}, []int32{3})
	b := &lm.Batch{Tokens: []int32{2, 0, 1, 5}, Targets: []int32{0, 1, 3, 3}}
	score := make([]float64, 4)
	lx.suffix(b, score)
	if want := []float64{0, 0, 4, 1}; !slices.Equal(score, want) {
		t.Fatalf("suffix scores %v, want %v", score, want)
	}
}

// The all-parameter gradient baselines agree with the linear-layer ones they contain: the
// linear layers hold most of the parameters, so per query the subset predictions of grad-dot
// over all parameters and over ff1, ff2, out correlate strongly and with the same sign (a
// wrong sign, token order or unit would break it), and likewise for TracIn-CP.
func TestGradientMethodsAllParameters(t *testing.T) {
	text := string(corpora.Default()[:40000])
	cfg := smallConfig(12)
	cfg.CheckpointEvery = 6
	base, err := trainRun(context.Background(), cfg, text)
	if err != nil {
		t.Fatal(err)
	}
	defer base.tr.Close()
	cfg = base.tr.Cfg
	opts := LDSOptions{Queries: 5, Subsets: 30, Drop: 0.05, Log: t.Logf}
	contexts, targets := base.tr.HeldOut(opts.Queries)
	perStep := cfg.Batch * cfg.Ctx
	subs := drawSubsets(cfg.Steps*perStep, opts.Subsets, opts.Drop, 4)
	unitOf := func(step, i int, _ *lm.Batch) int { return (step-1)*perStep + i }
	newMethod := func(name string, all bool) *method {
		return &method{name: name, layers: strings.Join(layerSet(cfg, all), ","), pred: make([]float64, opts.Subsets*opts.Queries)}
	}
	ms, err := gradientMethods(context.Background(), base, contexts, targets, subs, unitOf, newMethod, opts)
	if err != nil {
		t.Fatal(err)
	}
	byRow := map[string]*method{}
	for _, m := range ms {
		byRow[m.name+" over "+m.layers] = m
		if !(m.seconds > 0) {
			t.Errorf("%s over %s charged %v seconds", m.name, m.layers, m.seconds)
		}
	}
	linear := strings.Join(cfg.LayerNames(), ",")
	M, Q := opts.Subsets, opts.Queries
	for _, name := range []string{"grad-dot", "tracin-cp"} {
		all, lin := byRow[name+" over all parameters"], byRow[name+" over "+linear]
		if all == nil || lin == nil {
			t.Fatalf("%s: rows %v", name, byRow)
		}
		a, l := make([]float64, M), make([]float64, M)
		for q := range Q {
			for m := range M {
				a[m], l[m] = all.pred[m*Q+q], lin.pred[m*Q+q]
			}
			r := Pearson(a, l)
			t.Logf("%s query %d: correlation across subsets, all parameters vs linear layers %.3f", name, q, r)
			if !(r > 0.5) {
				t.Errorf("%s query %d: all-parameter and linear-layer predictions correlate %.3f", name, q, r)
			}
		}
	}
}

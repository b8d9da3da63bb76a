package query

import (
	"context"
	"errors"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/internal/filemem"
	"github.com/spotlight-lm/spotlight/lm"
)

var (
	fixOnce sync.Once
	fixEng  *Engine
	fixErr  error
)

// engine trains a tiny model on the start of the default corpus once per test binary.
func engine(t testing.TB) *Engine {
	t.Helper()
	fixOnce.Do(func() {
		c, _ := lm.Preset("tiny")
		c.D, c.Heads, c.Ctx, c.Batch, c.Steps, c.Warmup, c.CheckpointEvery = 16, 2, 16, 4, 20, 3, 10
		c.LR, c.WeightDecay = 0.2, 1e-3
		store, err := trainStore(fixDir, c, corpora.Default()[:20000])
		if err != nil {
			fixErr = err
			return
		}
		_, ckpt, err := store.Checkpoint()
		if err != nil {
			fixErr = err
			return
		}
		m, err := lm.LoadModel(ckpt)
		if err != nil {
			fixErr = err
			return
		}
		fixEng, fixErr = NewEngine(m, store, nil)
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fixEng
}

var fixDir string

func TestMain(m *testing.M) {
	filemem.MinMapped = 1 // the engines' indexes in files, however small, as in a large memory
	d, err := osMkdirTemp()
	if err != nil {
		panic(err)
	}
	fixDir = d
	code := m.Run()
	osRemoveAll(d)
	osExit(code)
}

func TestGenerateIdentityTopKCounterfactual(t *testing.T) {
	e := engine(t)
	ans, err := e.Generate(context.Background(), Request{Prompt: "The light ", Tokens: 5, TopK: 7, RankBy: "attention", GroupBy: GroupToken, Bins: 4, Temperature: temperature(0.8), Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.Tokens) != 5 || ans.Step != 20 {
		t.Fatalf("%d tokens, step %d", len(ans.Tokens), ans.Step)
	}
	if s := ans.Sampling; s == nil || *s != (Sampling{Method: MethodSample, Temperature: 0.8, Seed: 3}) {
		t.Errorf("sampling %+v", s)
	}
	for i, ta := range ans.Tokens {
		for name, la := range ta.Layers {
			dc := la.DualCheck
			if i == 0 {
				t.Logf("%s: %+v top0 %+v cf %v share %.3f", name, dc, la.Top[0], la.CounterfactualProb, *la.TopShare)
			}
			if rel := dc.AbsErr / math.Max(math.Abs(dc.Primal), 1e-3); rel > 1e-4 {
				t.Errorf("token %d layer %s: primal %g dual %g (rel %g)", i, name, dc.Primal, dc.Dual, rel)
			}
			if name != "out" && dc.MaxAbsErr > 1e-4 {
				t.Errorf("token %d layer %s: output vector err %g", i, name, dc.MaxAbsErr)
			}
			if len(la.Top) != 7 || len(la.Timeline) != 4 {
				t.Errorf("token %d layer %s: %d top, %d bins", i, name, len(la.Top), len(la.Timeline))
			}
			var tl float64
			for _, b := range la.Timeline {
				tl += b.Contribution
			}
			if d := math.Abs(tl - *la.PositiveTotal - *la.NegativeTotal); d > 1e-9*math.Max(1, *la.PositiveTotal) {
				t.Errorf("timeline sum %g vs totals %g", tl, *la.PositiveTotal+*la.NegativeTotal)
			}
		}
		if ta.Verbatim.Length == 0 || ta.Verbatim.Count == 0 {
			t.Errorf("token %d: no verbatim match: %+v", i, ta.Verbatim)
		}
	}
	// Brute force on `out` for each generated token: top-k by |α|, the sum, the counterfactual.
	sc := e.Scanner("out")
	m := sc.Mem
	prompt, _ := e.model.Tok.Encode("The light ")
	gen, _ := e.model.Tok.Encode(ans.Text)
	seq := append(prompt, gen...)
	for i, tok := range gen {
		ps, err := e.model.Probe([][]int32{seq[:len(prompt)+i]}, []int32{tok})
		if err != nil {
			t.Fatal(err)
		}
		x := ps[0].Layers["out"].X
		type kv struct {
			j int
			a float64
		}
		all := make([]kv, m.Tokens())
		logits := make([]float64, sc.DOut) // dual logits without the top-k tokens
		for o := range logits {
			logits[o] = sc.AB * float64(m.Initial.B[o])
			for k, xv := range x {
				logits[o] += sc.AW * float64(xv) * float64(m.Initial.W[k*sc.DOut+o])
			}
		}
		for j := range all {
			var a float64
			for k, xv := range x {
				a += float64(m.Keys[j*sc.DIn+k]) * float64(xv)
			}
			all[j] = kv{j, a}
		}
		sort.Slice(all, func(p, q int) bool { return math.Abs(all[p].a) > math.Abs(all[q].a) })
		// The top list skips a training window (step and row) or corpus position already listed.
		type window struct{ step, row int32 }
		seenW, seenO := map[window]bool{}, map[int64]bool{}
		distinct := all[:0:0]
		for _, c := range all {
			w := window{m.Step[c.j], m.Rows[c.j]}
			if !seenW[w] && !seenO[m.Offsets[c.j]] {
				seenW[w], seenO[m.Offsets[c.j]] = true, true
				distinct = append(distinct, c)
			}
		}
		all = distinct
		la := ans.Tokens[i].Layers["out"]
		top := map[int]bool{}
		for r, en := range la.Top {
			want := all[r]
			if en.Step != int(m.Step[want.j]) || en.Pos != int(m.Pos[want.j]) || en.Row != int(m.Rows[want.j]) ||
				math.Abs(en.Attention-want.a) > 1e-5*math.Max(1, math.Abs(want.a)) {
				t.Errorf("token %d rank %d: got %+v, brute force token %d α=%g", i, r, en, want.j, want.a)
			}
			top[want.j] = true
		}
		for j := range m.Tokens() {
			st := sc.StepIndex(j)
			var a float64
			for k, xv := range x {
				a += float64(m.Keys[j*sc.DIn+k]) * float64(xv)
			}
			for o := range logits {
				g := float64(m.Grads[j*sc.DOut+o])
				if !top[j] { // a removed token takes its bias share with it
					logits[o] += (sc.SW[st]*a + sc.SB[st]) * g
				}
			}
		}
		want := softmaxAt(logits, int(tok))
		if got := *la.CounterfactualProb; math.Abs(got-want) > 1e-5 {
			t.Errorf("token %d: counterfactual %g, direct %g", i, got, want)
		}
		if la.Top[0].Context == "" || la.Top[0].Target == "" {
			t.Errorf("empty context: %+v", la.Top[0])
		}
	}
}

func TestAttributeContributionRanking(t *testing.T) {
	e := engine(t)
	ans, err := e.Attribute(context.Background(), AttributeRequest{Text: "of the light", Layers: []string{"out", "block0.ff2"}, TopK: 5, GroupBy: GroupToken})
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.Tokens) != len("of the light")-1 || ans.Sampling != nil {
		t.Fatalf("%d tokens, sampling %+v (a scored text has none)", len(ans.Tokens), ans.Sampling)
	}
	for i, ta := range ans.Tokens {
		la := ta.Layers["out"]
		for r := 1; r < len(la.Top); r++ {
			if la.Top[r].Contribution > la.Top[r-1].Contribution {
				t.Errorf("token %d: contributions not descending", i)
			}
		}
		if rel := la.DualCheck.AbsErr / math.Max(math.Abs(la.DualCheck.Primal), 1e-3); rel > 1e-4 {
			t.Errorf("token %d: dual check %+v", i, la.DualCheck)
		}
		if !ta.Layers["block0.ff2"].FirstOrder || la.FirstOrder {
			t.Error("first_order flags wrong")
		}
		if len(ta.Layers) != 2 {
			t.Errorf("layers %v", ta.Layers)
		}
		for name, l := range ta.Layers { // each entry names its own place in the memory
			m := e.Scanner(name).Mem
			for _, en := range l.Top {
				if j := en.Index; int(m.Step[j]) != en.Step || int(m.Rows[j]) != en.Row || int(m.Pos[j]) != en.Pos || m.Offsets[j] != en.Offset {
					t.Errorf("%s: entry %+v is not memory token %d", name, en, j)
				}
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	e := engine(t)
	cfg := e.model.Cfg
	ok := func() Request { return Request{Prompt: "the"} }
	cases := []struct {
		name, field, msg string
		mod              func(*Request)
	}{
		{"empty prompt", "prompt", "empty", func(r *Request) { r.Prompt = "" }},
		{"long prompt", "prompt", "at most", func(r *Request) { r.Prompt = strings.Repeat("a", 4097) }},
		{"tokens low", "tokens", "outside", func(r *Request) { r.Tokens = -1 }},
		{"tokens high", "tokens", "outside", func(r *Request) { r.Tokens = 1025 }},
		{"top_k low", "top_k", "outside", func(r *Request) { r.TopK = -3 }},
		{"top_k high", "top_k", "outside", func(r *Request) { r.TopK = 1001 }},
		{"layer", "layers", `"block9.ff1"`, func(r *Request) { r.Layers = []string{"block9.ff1"} }},
		{"rank", "rank_by", `"loudness"`, func(r *Request) { r.RankBy = "loudness" }},
		{"temp", "temperature", "outside", func(r *Request) { r.Temperature = temperature(-1) }},
		{"temp nan", "temperature", "outside", func(r *Request) { r.Temperature = temperature(math.NaN()) }},
		{"temp high", "temperature", "outside", func(r *Request) { r.Temperature = temperature(11) }},
		{"bins", "bins", "outside", func(r *Request) { r.Bins = 1001 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ok()
			c.mod(&r)
			err := r.Normalize(cfg)
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != c.field || !strings.Contains(ie.Error(), c.msg) {
				t.Fatalf("got %v", err)
			}
		})
	}
	r := ok()
	if err := r.Normalize(cfg); err != nil || r.Tokens != 32 || r.TopK != 10 || r.RankBy != "contribution" || r.Bins != 20 || len(r.Layers) != 3 {
		t.Fatalf("defaults: %+v %v", r, err)
	}
	_, err := e.Generate(context.Background(), Request{Prompt: "zebra ☃ and 漢"})
	var ie *InputError
	var uc *lm.UnknownCharsError
	if !errors.As(err, &ie) || !errors.As(err, &uc) || !strings.Contains(err.Error(), "☃") || !strings.Contains(err.Error(), "漢") {
		t.Fatalf("unknown chars: %v", err)
	}
	if _, err := e.Attribute(context.Background(), AttributeRequest{Text: "a"}); !IsInputError(err) {
		t.Fatalf("short text: %v", err)
	}
	_ = dualmem.F32
}

func TestConcurrent(t *testing.T) {
	e := engine(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	texts := make([]string, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := e.Generate(context.Background(), Request{Prompt: "Light", Tokens: 3, Layers: []string{"out"}})
			errs[i] = err
			if err == nil {
				texts[i] = a.Text
			}
		}()
	}
	wg.Wait()
	for i := range 4 {
		if errs[i] != nil || texts[i] != texts[0] {
			t.Fatalf("request %d: %q %v (first %q)", i, texts[i], errs[i], texts[0])
		}
	}
}

// softmaxAt is the probability of class k under logits l.
func softmaxAt(l []float64, k int) float64 {
	hi := math.Inf(-1)
	for _, v := range l {
		hi = math.Max(hi, v)
	}
	var sum float64
	for _, v := range l {
		sum += math.Exp(v - hi)
	}
	return math.Exp(l[k]-hi) / sum
}

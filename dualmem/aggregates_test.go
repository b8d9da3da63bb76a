package dualmem

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/lm"
)

// trainAggStore trains a tiny model (d=16, every layer captured) into a store in dir and
// closes it.
func trainAggStore(t *testing.T, dir string) {
	t.Helper()
	c, _ := lm.Preset("tiny")
	c.D, c.Heads, c.Ctx, c.Batch, c.Steps, c.Warmup, c.CheckpointEvery = 16, 2, 16, 4, 30, 3, 10
	c.LR, c.WeightDecay = 0.2, 1e-3
	tr, err := lm.NewTrainer(c, string(corpora.Default()[:20000]))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	meta, err := MetaFor(tr.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	ckpt, err := tr.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Create(dir, meta, corpora.Default()[:20000], tr.Initial(), ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Train(context.Background(), s, tr.Cfg.Steps, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// scanners opens the memory of every committed step of s, by layer name.
// aggScanners opens a freshly trained aggregate store read-only (closed when the test ends)
// and returns its scanners by layer.
func aggScanners(t *testing.T) map[string]*Scanner {
	t.Helper()
	dir := t.TempDir()
	trainAggStore(t, dir)
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return scanners(t, s)
}

func scanners(t *testing.T, s *Store) map[string]*Scanner {
	t.Helper()
	mems, err := s.Memory(s.Steps(), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*Scanner{}
	for _, m := range mems {
		out[m.Spec.Name] = NewScanner(m, s.Meta())
	}
	return out
}

// reference is Sums computed directly from the keys and gradients in float64, with the
// scale of the sums (Σ|α| and Σ|contribution|, per step and in all) that bounds rounding.
type reference struct {
	stepAlpha, stepContribution, stepAbsAlpha, stepAbsContribution []float64
	contribution, absContribution                                  float64
}

func referenceSums(s *Scanner, q Query, from, to int) reference {
	T := len(s.Mem.Steps)
	r := reference{stepAlpha: make([]float64, T), stepContribution: make([]float64, T),
		stepAbsAlpha: make([]float64, T), stepAbsContribution: make([]float64, T)}
	for j := from; j < to; j++ {
		var a, p float64
		for i, k := range s.Mem.Keys[j*s.DIn : (j+1)*s.DIn] {
			a += float64(k) * float64(q.X[i])
		}
		g := s.Mem.Grads[j*s.DOut : (j+1)*s.DOut]
		if q.Token >= 0 {
			p = float64(g[q.Token])
		} else {
			for o, u := range q.U {
				p += float64(g[o]) * float64(u)
			}
		}
		t := s.StepIndex(j)
		c := a * s.SW[t] * p
		r.stepAlpha[t] += a
		r.stepAbsAlpha[t] += math.Abs(a)
		r.stepContribution[t] += c
		r.stepAbsContribution[t] += math.Abs(c)
		r.contribution += c
		r.absContribution += math.Abs(c)
	}
	return r
}

func within(t *testing.T, what string, got, want, scale, tol float64) {
	t.Helper()
	if d := math.Abs(got - want); d > tol*scale+1e-300 {
		t.Errorf("%s = %.17g, want %.17g (off by %.3g, %.3g of the scale %.3g)", what, got, want, d, d/scale, scale)
	}
}

// TestSumsMatchScan: on a real trained memory, the aggregates' totals, W_0 and bias terms
// and per-step sums equal a float64 reference from the keys to float64 rounding, and the
// float32 scan's within its own tolerance, for `out` and a hidden layer, one-hot and general
// projections, over all tokens, whole steps and a range that cuts steps.
func TestSumsMatchScan(t *testing.T) {
	scs := aggScanners(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, layer := range []string{lm.OutLayer, "block0.ff1"} {
		sc := scs[layer]
		start := func(k int) int { // first token of step index k
			n := 0
			for _, si := range sc.Mem.Steps[:k] {
				n += si.Tokens()
			}
			return n
		}
		x := append([]float32(nil), sc.Mem.Keys[5*sc.DIn:6*sc.DIn]...) // a real input, perturbed
		for i := range x {
			x[i] += float32(rng.NormFloat64() * 0.1)
		}
		u := make([]float32, sc.DOut)
		for i := range u {
			u[i] = float32(rng.NormFloat64())
		}
		queries := map[string]Query{"U": {X: x, Token: -1, U: u}}
		if layer == lm.OutLayer {
			queries["token"] = Query{X: x, Token: 7}
		}
		for qname, q := range queries {
			for _, rg := range []struct {
				name     string
				from, to int
				partial  bool
			}{
				{"all", 0, 0, false},
				{"whole steps", start(3), start(20), false},
				{"cut steps", start(3) + 5, start(20) - 3, true},
				{"inside one step", start(4) + 1, start(4) + 9, true},
			} {
				t.Run(layer+"/"+qname+"/"+rg.name, func(t *testing.T) {
					to := rg.to
					if to == 0 {
						to = sc.N
					}
					got, err := sc.Sums(q, rg.from, rg.to)
					if err != nil {
						t.Fatal(err)
					}
					ref := referenceSums(sc, q, rg.from, to)
					const f64 = 1e-12 // float64 rounding of sums of a few thousand terms
					within(t, "Contribution", got.Contribution, ref.contribution, ref.absContribution, f64)
					for k := range ref.stepAlpha {
						within(t, "StepAlpha", got.StepAlpha[k], ref.stepAlpha[k], ref.stepAbsAlpha[k], f64)
						within(t, "StepContribution", got.StepContribution[k], ref.stepContribution[k], ref.stepAbsContribution[k], f64)
					}
					if (got.Read.BytesRead > 0) != rg.partial || got.Read.BytesTotal != int64(sc.N*4*(sc.DIn+sc.DOut)) {
						t.Errorf("read %+v for a range that cuts steps: %v", got.Read, rg.partial)
					}

					res, err := sc.Scan(context.Background(), []Query{q}, ScanOptions{TopK: 1, From: rg.from, To: rg.to})
					if err != nil {
						t.Fatal(err)
					}
					r := res[0]
					if r.W0Term != got.W0Term || r.BiasTerm != got.BiasTerm {
						t.Errorf("terms %g %g, scan's %g %g", got.W0Term, got.BiasTerm, r.W0Term, r.BiasTerm)
					}
					const f32 = 1e-5 // the scan's α are float32
					within(t, "scan Σ contribution", r.Positive+r.Negative, ref.contribution, ref.absContribution, f32)
					for k := range ref.stepAlpha {
						within(t, "scan StepAlpha", r.StepAlpha[k], ref.stepAlpha[k], ref.stepAbsAlpha[k], f32)
						within(t, "scan StepContribution", r.StepContribution[k], ref.stepContribution[k], ref.stepAbsContribution[k], f32)
					}
					within(t, "dual", got.Total(), r.Total(), r.AbsTotal+math.Abs(r.W0Term)+math.Abs(r.BiasTerm), f32)
				})
			}
		}
	}
	if _, err := scs[lm.OutLayer].Sums(Query{X: make([]float32, 3), Token: 0}, 0, 0); err == nil {
		t.Error("a query of the wrong width was accepted")
	}
	if _, err := scs[lm.OutLayer].Sums(Query{X: make([]float32, scs[lm.OutLayer].DIn), Token: 0}, 5, 3); err == nil {
		t.Error("a reversed range was accepted")
	}
}

// TestAggregatesRebuilt: a missing aggregate file is rebuilt from the database by a
// read-write open and gives the same sums; read-only, Sums says there are none. A corrupt
// step is an error naming the layer and the step; a corrupt last step is caught at open and
// rebuilt.
func TestAggregatesRebuilt(t *testing.T) {
	dir := t.TempDir()
	trainAggStore(t, dir)
	seg := filepath.Join(dir, SegmentsDir)
	sums := func(s *Store, layer string) (Sums, error) {
		sc := scanners(t, s)[layer]
		u := make([]float32, sc.DOut)
		u[1], u[2] = 1, -0.5
		return sc.Sums(Query{X: sc.Mem.Keys[:sc.DIn], Token: -1, U: u}, 0, 0)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := sums(s, "block0.ff2")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	t.Run("missing", func(t *testing.T) {
		if err := os.Remove(filepath.Join(seg, "block0.ff2.agg")); err != nil {
			t.Fatal(err)
		}
		r, err := OpenReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sums(r, "block0.ff2"); !errors.Is(err, ErrNoAggregates) {
			t.Errorf("read-only without the file: %v", err)
		}
		if _, err := sums(r, "out"); err != nil {
			t.Errorf("another layer: %v", err)
		}
		r.Close()
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got, err := sums(s, "block0.ff2")
		if err != nil {
			t.Fatal(err)
		}
		if got.Contribution != want.Contribution || got.StepAlpha[9] != want.StepAlpha[9] {
			t.Errorf("rebuilt: %g, %g; want %g, %g", got.Contribution, got.StepAlpha[9], want.Contribution, want.StepAlpha[9])
		}
	})
	t.Run("corrupt step", func(t *testing.T) {
		a := newAggFiles(seg, mustMeta(t, dir))[0]
		flipByteAt(t, a.path, a.size(6)+aggPrefix+17) // a payload byte of step 7
		r, err := OpenReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, err = sums(r, a.layer)
		if err == nil || !strings.Contains(err.Error(), `layer "`+a.layer+`": step 7: checksum mismatch`) {
			t.Fatalf("corrupt step 7: %v", err)
		}
	})
	t.Run("corrupt last step", func(t *testing.T) {
		flipLastByte(t, filepath.Join(seg, "out.agg"))
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := sums(s, "out"); err != nil {
			t.Fatalf("after the rebuild: %v", err)
		}
	})
}

func mustMeta(t *testing.T, dir string) Meta {
	t.Helper()
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.Meta()
}

func flipByteAt(t *testing.T, path string, at int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[at] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAggregatesFollowCommits: steps appended beyond a commit and discarded leave no
// aggregates behind, and later appends extend them.
func TestAggregatesFollowCommits(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(9, 10))
	s := mustCreate(t, dir, testMeta(F32), rng)
	appendSteps(t, s, 1, 5, rng)
	if err := s.Commit(3, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.DiscardUncommitted(); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, 4, 6, rng)
	if err := s.Commit(6, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, sc := range scanners(t, s) {
		q := Query{X: randF32(rng, sc.DIn, 1e-3), Token: 1}
		got, err := sc.Sums(q, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		ref := referenceSums(sc, q, 0, sc.N)
		within(t, sc.Mem.Spec.Name+" Contribution", got.Contribution, ref.contribution, ref.absContribution, 1e-12)
		for k := range ref.stepAlpha {
			within(t, sc.Mem.Spec.Name+" StepAlpha", got.StepAlpha[k], ref.stepAlpha[k], ref.stepAbsAlpha[k], 1e-12)
		}
	}
}

// BenchmarkSumsReal compares SumsAll with a full Scan of 16 queries per layer on the data
// directory named by $SPOTLIGHT_AGG_BENCH_DIR (opened read-only; its aggregate files must be
// built), e.g. the default model.
func BenchmarkSumsReal(b *testing.B) {
	dir := os.Getenv("SPOTLIGHT_AGG_BENCH_DIR")
	if dir == "" {
		b.Skip("set SPOTLIGHT_AGG_BENCH_DIR to a data directory")
	}
	s, err := OpenReadOnly(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	mems, err := s.Memory(s.Steps(), nil)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, m := range mems {
		sc := NewScanner(m, s.Meta())
		qs := make([]Query, 16)
		for i := range qs {
			j := rng.IntN(sc.N)
			qs[i] = Query{X: sc.Mem.Keys[j*sc.DIn : (j+1)*sc.DIn], Token: rng.IntN(sc.DOut)}
			if m.Spec.Name != lm.OutLayer {
				qs[i].Token, qs[i].U = -1, randF32(rng, sc.DOut, 1)
			}
		}
		b.Run("sums/"+m.Spec.Name, func(b *testing.B) {
			for b.Loop() {
				if _, err := sc.SumsAll(context.Background(), qs, 0, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("scan/"+m.Spec.Name, func(b *testing.B) {
			for b.Loop() {
				if _, err := sc.Scan(context.Background(), qs, ScanOptions{TopK: 104}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAggRecord is the capture-time cost of one step's aggregates for the default
// model's layers (512 tokens a step, d=64: out 64→91, ff1 64→256, ff2 256→64).
func BenchmarkAggRecord(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	const n = 512
	for _, l := range [][2]int{{64, 91}, {64, 256}, {256, 64}} {
		keys, grads := randF32(rng, n*l[0], 1), randF32(rng, n*l[1], 1e-3)
		b.Run(strconv.Itoa(l[0])+"x"+strconv.Itoa(l[1]), func(b *testing.B) {
			for b.Loop() {
				aggRecord(l[0], l[1], n, keys, grads)
			}
		})
	}
}

// TestAddOuterKernels: the AVX2 kernel (where the CPU has it) and gonum's Gemm give the
// same Σ g kᵀ to float64 rounding, for widths it takes whole, in part and not at all.
func TestAddOuterKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, sh := range []struct{ din, dout, n int }{{16, 7, 9}, {48, 3, 4}, {64, 91, 37}, {256, 64, 13}, {20, 5, 8}, {64, 2, 3}} {
		keys, grads := randF32(rng, sh.n*sh.din, 1), randF32(rng, sh.n*sh.dout, 1e-3)
		k64 := make([]float64, len(keys))
		for i, v := range keys {
			k64[i] = float64(v)
		}
		got, want := make([]float64, sh.din*sh.dout), make([]float64, sh.din*sh.dout)
		addOuter(got, sh.din, sh.dout, sh.n, k64, grads)
		addOuterGemm(want, sh.din, sh.dout, sh.n, k64, grads)
		for i := range want {
			var scale float64
			o, c := i/sh.din, i%sh.din
			for j := range sh.n {
				scale += math.Abs(float64(grads[j*sh.dout+o]) * k64[j*sh.din+c])
			}
			within(t, "G", got[i], want[i], scale, 1e-14)
		}
	}
}

// The final weights rebuilt from the aggregates (no key read) are the ones rebuilt from every
// token, up to the order of float64 sums, and the per-step gradient sums are the same bits;
// without aggregates the token loop gives them.
func TestDualFromAggregates(t *testing.T) {
	dir := t.TempDir()
	trainAggStore(t, dir)
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, sc := range scanners(t, s) {
		if sc.HasAggregates() != nil {
			t.Fatalf("%s: no aggregates", name)
		}
		x := sc.Mem.Keys[3*sc.DIn : 4*sc.DIn]
		got := sc.Dual(x)
		plain := *sc.Mem
		plain.agg = nil
		ref := NewScanner(&plain, s.Meta())
		for i := range ref.GSum { // the bias's per-step sums, read from the aggregates
			if sc.GSum[i] != ref.GSum[i] {
				t.Fatalf("%s: gradient sum %d from aggregates %.17g, from tokens %.17g", name, i, sc.GSum[i], ref.GSum[i])
			}
		}
		want := ref.Dual(x)
		for o := range want {
			if d := math.Abs(got[o] - want[o]); d > 1e-12*math.Max(1, math.Abs(want[o])) {
				t.Fatalf("%s: output %d from aggregates %.17g, from tokens %.17g", name, o, got[o], want[o])
			}
		}
	}
}

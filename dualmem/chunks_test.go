package dualmem

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/lm"
)

// TestSumsSpans: SumsSpans over spans of steps (a timeline's bins, one span, uneven and
// empty spans) equals SumsAll's per-step sums added up per span, to float64 rounding, for
// `out` and a hidden layer, one-hot and general projections, over all tokens, whole steps
// and ranges that cut steps, with chunks of 4 steps so that most spans take chunk sums.
func TestSumsSpans(t *testing.T) {
	scs := aggScanners(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, layer := range []string{lm.OutLayer, "block0.ff1"} {
		sc := scs[layer]
		sc.chunkSteps = 4
		T := len(sc.Mem.Steps)
		if cs := sc.chunks(); cs.err != nil || cs.count != T/4 {
			t.Fatalf("%s: %d chunk sums (%v), want %d", layer, cs.count, cs.err, T/4)
		}
		start := func(k int) int {
			n := 0
			for _, si := range sc.Mem.Steps[:k] {
				n += si.Tokens()
			}
			return n
		}
		x := append([]float32(nil), sc.Mem.Keys[7*sc.DIn:8*sc.DIn]...)
		u := make([]float32, sc.DOut)
		for i := range u {
			u[i] = float32(rng.NormFloat64())
		}
		queries := []Query{{X: x, Token: -1, U: u}}
		if layer == lm.OutLayer {
			queries = append(queries, Query{X: x, Token: 3})
		}
		bins := []int{}
		for b := range 8 {
			bins = append(bins, b*T/7)
		}
		bins[7] = T
		for _, cuts := range [][]int{{0, T}, bins, {0, 1, 9, 9, 10, T}} {
			for _, rg := range [][2]int{{0, 0}, {start(3), start(20)}, {start(3) + 5, start(21) - 3}, {start(4) + 1, start(4) + 9}} {
				got, err := sc.SumsSpans(context.Background(), queries, rg[0], rg[1], cuts)
				if err != nil {
					t.Fatal(err)
				}
				want, err := sc.SumsAll(context.Background(), queries, rg[0], rg[1])
				if err != nil {
					t.Fatal(err)
				}
				to := rg[1]
				if to == 0 {
					to = sc.N
				}
				for i, q := range queries {
					ref := referenceSums(sc, q, rg[0], to)
					g, w := got[i], want[i]
					if len(g.StepAlpha) != len(cuts)-1 || g.W0Term != w.W0Term || g.BiasTerm != w.BiasTerm || g.Read != w.Read {
						t.Fatalf("%s %v %v: %d spans, terms %g %g, read %+v; want %d, %g %g, %+v", layer, cuts, rg,
							len(g.StepAlpha), g.W0Term, g.BiasTerm, g.Read, len(cuts)-1, w.W0Term, w.BiasTerm, w.Read)
					}
					const f64 = 1e-12
					within(t, "Contribution", g.Contribution, w.Contribution, ref.absContribution, f64)
					for sp := range len(cuts) - 1 {
						var a, c, sa, scale float64
						for k := cuts[sp]; k < cuts[sp+1]; k++ {
							a, c = a+w.StepAlpha[k], c+w.StepContribution[k]
							sa, scale = sa+ref.stepAbsAlpha[k], scale+ref.stepAbsContribution[k]
						}
						within(t, layer+" span α", g.StepAlpha[sp], a, sa, f64)
						within(t, layer+" span contribution", g.StepContribution[sp], c, scale, f64)
					}
				}
			}
		}
		for _, cuts := range [][]int{nil, {0, 5}, {1, T}, {0, 9, 4, T}} {
			if _, err := sc.SumsSpans(context.Background(), queries, 0, 0, cuts); err == nil {
				t.Errorf("%s: cuts %v accepted", layer, cuts)
			}
		}
	}
}

// TestSumsSpansCorrupt: a corrupt step inside a chunk leaves the chunk sums unused, and
// SumsSpans then names the layer and the step, as SumsAll does.
func TestSumsSpansCorrupt(t *testing.T) {
	dir := t.TempDir()
	trainAggStore(t, dir)
	a := newAggFiles(filepath.Join(dir, SegmentsDir), mustMeta(t, dir))[0]
	flipByteAt(t, a.path, a.size(6)+aggPrefix+17) // a payload byte of step 7
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sc := scanners(t, s)[a.layer]
	sc.chunkSteps = 4
	T := len(sc.Mem.Steps)
	u := make([]float32, sc.DOut)
	u[0] = 1
	_, err = sc.SumsSpans(context.Background(), []Query{{X: sc.Mem.Keys[:sc.DIn], Token: -1, U: u}}, 0, 0, []int{0, T / 2, T})
	if err == nil || !strings.Contains(err.Error(), `layer "`+a.layer+`": step 7: checksum mismatch`) {
		t.Fatalf("corrupt step 7: %v", err)
	}
	if cs := sc.chunks(); cs.err == nil || cs.g != nil {
		t.Errorf("chunk sums over a corrupt step: %v", cs.err)
	}
}

package dualmem

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/lm"
)

// trainStore trains a tiny model (d=16) for steps steps into a new store in a temporary
// directory and returns the directory, closed.
func trainStore(t testing.TB, steps int) string {
	t.Helper()
	c, err := lm.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	c.D, c.Heads, c.Ctx, c.Batch, c.Steps, c.Warmup, c.CheckpointEvery = 16, 2, 32, 8, steps, 3, 10
	text := corpora.Default()[:20000]
	tr, err := lm.NewTrainer(c, string(text))
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
	dir := filepath.Join(t.TempDir(), "d")
	s, err := Create(dir, meta, text, tr.Initial(), ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Train(context.Background(), s, steps, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// searchQueries builds n queries for m: keys of random memory tokens, perturbed, or
// Gaussian vectors of the keys' scale; every other query projects on a random U, the rest
// on a random token.
func testQueries(m *LayerMemory, n int, rng *rand.Rand) []Query {
	din, dout := m.Spec.DIn, m.Spec.DOut
	var scale float64
	for _, k := range m.Keys[:din*min(m.Tokens(), 100)] {
		scale += float64(k) * float64(k)
	}
	scale = math.Sqrt(scale / float64(din*min(m.Tokens(), 100)))
	qs := make([]Query, n)
	for i := range qs {
		x := make([]float32, din)
		j := rng.IntN(m.Tokens())
		for p := range x {
			if i%3 == 2 {
				x[p] = float32(rng.NormFloat64() * scale)
			} else {
				x[p] = m.Keys[j*din+p] * float32(1+0.1*rng.NormFloat64())
			}
		}
		qs[i] = Query{X: x, Token: rng.IntN(dout)}
		if i%2 == 1 {
			u := make([]float32, dout)
			for p := range u {
				u[p] = float32(rng.NormFloat64())
			}
			qs[i] = Query{X: x, U: u, Token: -1}
		}
	}
	return qs
}

// sameTop checks that got lists the same hits as want in order, ties aside: where the
// indices differ, the scores must agree (to float32 rounding of α).
func sameTop(t *testing.T, what string, got, want []Hit, score func(Hit) float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d hits, want %d", what, len(got), len(want))
	}
	var cmax float64
	for _, w := range want {
		cmax = math.Max(cmax, math.Abs(w.Contribution))
	}
	for i := range want {
		g, w := got[i], want[i]
		tol := 1e-5 * math.Max(math.Abs(score(w)), 1e-30)
		if g.Index != w.Index {
			if math.Abs(score(g)-score(w)) > tol {
				t.Fatalf("%s rank %d: token %d (%g), want %d (%g)", what, i, g.Index, score(g), w.Index, score(w))
			}
			continue
		}
		if math.Abs(g.Alpha-w.Alpha) > 1e-5*math.Max(math.Abs(w.Alpha), 1e-30) ||
			math.Abs(g.Contribution-w.Contribution) > 1e-5*math.Max(cmax, 1e-30) {
			t.Fatalf("%s rank %d: token %d α %g c %g, want α %g c %g", what, i, g.Index, g.Alpha, g.Contribution, w.Alpha, w.Contribution)
		}
	}
}

func absAlpha(h Hit) float64     { return math.Abs(h.Alpha) }
func contribution(h Hit) float64 { return h.Contribution }

// checkSearch compares Search with Scan for every layer, several k and token ranges.
func checkSearch(t *testing.T, mems []*LayerMemory, meta Meta, rng *rand.Rand) {
	t.Helper()
	for _, m := range mems {
		s := NewScanner(m, meta)
		qs := testQueries(m, 12, rng)
		N := s.N
		for _, rg := range [][2]int{{0, 0}, {N / 3, 2*N/3 + 7}, {5, 6}, {N - 100, N}, {17, 17}} {
			for _, k := range []int{1, 5, 10, 40} {
				ctx := context.Background()
				want, err := s.Scan(ctx, qs, ScanOptions{TopK: k, From: rg[0], To: rg[1]})
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.Search(ctx, qs, SearchOptions{TopK: k, From: rg[0], To: rg[1], Workers: 1 + k%3})
				if err != nil {
					t.Fatal(err)
				}
				st := got[0].Stats
				to := rg[1]
				if to == 0 {
					to = N
				}
				if st.BytesTotal != int64(to-rg[0])*int64(4*(s.DIn+s.DOut)) || st.BytesRead > st.BytesTotal+int64(to-rg[0])*int64(s.DIn+s.DOut) || st.BlocksRead > st.BlocksTotal {
					t.Fatalf("%s [%d,%d) k=%d: stats %+v", m.Spec.Name, rg[0], rg[1], k, st)
				}
				if rg == [2]int{0, 0} {
					t.Logf("%s k=%d: read %d of %d blocks (%.1f%% of bytes)", m.Spec.Name, k, st.BlocksRead, st.BlocksTotal, 100*float64(st.BytesRead)/float64(st.BytesTotal))
				}
				only, err := s.Search(ctx, qs, SearchOptions{TopK: k, From: rg[0], To: rg[1], SkipAttention: k%2 == 0, SkipContribution: k%2 == 1})
				if err != nil {
					t.Fatal(err)
				}
				// Split over 2 or 3 parts sharing thresholds: the same lists, reads counted once.
				split, err := s.Search(ctx, qs, SearchOptions{TopK: k, From: rg[0], To: rg[1], Workers: 2 + k%2, Split: true})
				if err != nil {
					t.Fatal(err)
				}
				if sst := split[0].Stats; sst.BytesTotal != st.BytesTotal || sst.BlocksTotal != st.BlocksTotal || sst.BlocksRead > sst.BlocksTotal {
					t.Fatalf("%s [%d,%d) k=%d: split stats %+v, one search %+v", m.Spec.Name, rg[0], rg[1], k, sst, st)
				}
				// Step bounds computed beforehand, a few queries at a time: the same search.
				var steps []StepBounds
				for lo := 0; lo < len(qs); lo += 5 {
					sb, err := s.BoundSteps(qs[lo:min(lo+5, len(qs))], rg[0], rg[1])
					if err != nil {
						t.Fatal(err)
					}
					steps = append(steps, sb...)
				}
				// One worker: with more, what a round reads depends on which worker takes what.
				given, err := s.Search(ctx, qs, SearchOptions{TopK: k, From: rg[0], To: rg[1], Workers: 1, Steps: steps})
				if err != nil {
					t.Fatal(err)
				}
				one, err := s.Search(ctx, qs, SearchOptions{TopK: k, From: rg[0], To: rg[1], Workers: 1})
				if err != nil {
					t.Fatal(err)
				}
				if given[0].Stats != one[0].Stats {
					t.Fatalf("%s [%d,%d) k=%d: stats %+v with the step bounds given, %+v without", m.Spec.Name, rg[0], rg[1], k, given[0].Stats, one[0].Stats)
				}
				givenSplit, err := s.Search(ctx, qs, SearchOptions{TopK: k, From: rg[0], To: rg[1], Workers: 2, Split: true, Steps: steps})
				if err != nil {
					t.Fatal(err)
				}
				for qi := range qs {
					what := func(r string) string {
						return m.Spec.Name + " " + r + " query " + itoa(qi) + " k=" + itoa(k) + " range " + itoa(rg[0]) + "-" + itoa(rg[1])
					}
					sameTop(t, what("attention"), got[qi].TopAttention, want[qi].TopAttention, absAlpha)
					sameTop(t, what("contribution"), got[qi].TopContribution, want[qi].TopContribution, contribution)
					sameTop(t, what("split attention"), split[qi].TopAttention, want[qi].TopAttention, absAlpha)
					sameTop(t, what("split contribution"), split[qi].TopContribution, want[qi].TopContribution, contribution)
					sameTop(t, what("given attention"), given[qi].TopAttention, want[qi].TopAttention, absAlpha)
					sameTop(t, what("given contribution"), given[qi].TopContribution, want[qi].TopContribution, contribution)
					sameTop(t, what("given split contribution"), givenSplit[qi].TopContribution, want[qi].TopContribution, contribution)
					if k%2 == 0 {
						sameTop(t, what("contribution only"), only[qi].TopContribution, want[qi].TopContribution, contribution)
					} else {
						sameTop(t, what("attention only"), only[qi].TopAttention, want[qi].TopAttention, absAlpha)
					}
					if len(only[qi].TopAttention)*len(only[qi].TopContribution) != 0 {
						t.Fatalf("%s: a skipped ranking has hits", what("skip"))
					}
				}
			}
		}
	}
}

// On real trained memories (every captured layer), Search's top-k is Scan's, with bounds
// from the sidecar files and computed in memory.
func TestSearchMatchesScan(t *testing.T) {
	dir := trainStore(t, 30)
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mems, err := s.Memory(s.Steps(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mems {
		if m.bounds == nil {
			t.Fatalf("%s: no block bounds from the sidecar", m.Spec.Name)
		}
	}
	// The layers share one block layout (it depends on the targets alone).
	if a, b := NewScanner(mems[0], s.Meta()).index(), NewScanner(mems[1], s.Meta()).index(); a.blockLayout != b.blockLayout {
		t.Fatal("two layers of one memory built a block layout each")
	}
	rng := rand.New(rand.NewPCG(7, 7))
	checkSearch(t, mems, s.Meta(), rng)
	for _, m := range mems {
		heapMem := *m
		heapMem.bounds = nil
		checkSearch(t, []*LayerMemory{&heapMem}, s.Meta(), rng)
	}
}

// A missing bounds file is rebuilt (the same bytes as appended during training); a corrupt
// one is reported naming the layer and step, left out on a read-only open (Search computes
// the bounds in memory and still answers exactly) and rebuilt on a read-write one.
func TestSearchBoundsFiles(t *testing.T) {
	dir := trainStore(t, 12)
	seg := filepath.Join(dir, SegmentsDir)
	orig := map[string][]byte{}
	for _, l := range []string{"out", "block0.ff1"} {
		b, err := os.ReadFile(filepath.Join(seg, l+".bounds"))
		if err != nil {
			t.Fatal(err)
		}
		orig[l] = b
	}
	open := func(readOnly bool) (*Store, []*LayerMemory) {
		t.Helper()
		openDir := Open
		if readOnly {
			openDir = OpenReadOnly
		}
		s, err := openDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		mems, err := s.Memory(s.Steps(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s, mems
	}
	layer := func(s *Store, mems []*LayerMemory, name string) *LayerMemory {
		for li, l := range s.Meta().Layers {
			if l.Name == name {
				return mems[li]
			}
		}
		t.Fatalf("no layer %s", name)
		return nil
	}
	rng := rand.New(rand.NewPCG(9, 9))

	if err := os.Remove(filepath.Join(seg, "out.bounds")); err != nil {
		t.Fatal(err)
	}
	s, mems := open(false)
	if layer(s, mems, "out").bounds == nil {
		t.Fatal("missing bounds not rebuilt")
	}
	checkSearch(t, []*LayerMemory{layer(s, mems, "out")}, s.Meta(), rng)
	s.Close()
	if b, err := os.ReadFile(filepath.Join(seg, "out.bounds")); err != nil || !bytes.Equal(b, orig["out"]) {
		t.Fatalf("rebuilt out.bounds differs from the appended one (%v)", err)
	}

	path := filepath.Join(seg, "block0.ff1.bounds")
	b := append([]byte(nil), orig["block0.ff1"]...)
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var bf *boundsFile
	for _, f := range newBoundsFiles(seg, s.Meta()) {
		if f.layer == "block0.ff1" {
			bf = f
		}
	}
	if err := bf.check(s.segments().starts); err == nil || !strings.Contains(err.Error(), `layer "block0.ff1"`) || !strings.Contains(err.Error(), "step") {
		t.Fatalf("corrupt bounds: %v", err)
	}
	s, mems = open(true)
	m := layer(s, mems, "block0.ff1")
	if m.bounds != nil {
		t.Fatal("corrupt bounds used")
	}
	checkSearch(t, []*LayerMemory{m}, s.Meta(), rng)
	s.Close()
	s, mems = open(false)
	if layer(s, mems, "block0.ff1").bounds == nil {
		t.Fatal("corrupt bounds not rebuilt")
	}
	s.Close()
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, orig["block0.ff1"]) {
		t.Fatalf("rebuilt block0.ff1.bounds differs from the appended one (%v)", err)
	}

	// A file of the earlier format (no balls, no gradient codes) is rebuilt, not misread.
	old := append([]byte("SPBND001"), orig["out"][8:]...)
	if err := os.WriteFile(filepath.Join(seg, "out.bounds"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	s, mems = open(false)
	if layer(s, mems, "out").bounds == nil {
		t.Fatal("old-format bounds not rebuilt")
	}
	s.Close()
	if b, err := os.ReadFile(filepath.Join(seg, "out.bounds")); err != nil || !bytes.Equal(b, orig["out"]) {
		t.Fatalf("rebuilt out.bounds differs from the appended one (%v)", err)
	}
}

// Step bounds for another range, another memory or another number of queries are refused,
// as is a bad range or query for BoundSteps itself.
func TestSearchStepBoundsBadInput(t *testing.T) {
	mem, meta := randomMemory(3000, 8, 3, 5)
	s, other := NewScanner(mem, meta), NewScanner(mem, meta)
	qs := []Query{{X: make([]float32, 8), Token: 0}, {X: make([]float32, 8), Token: 1}}
	at := func(sc *Scanner, from, to int) []StepBounds {
		sb, err := sc.BoundSteps(qs, from, to)
		if err != nil {
			t.Fatal(err)
		}
		return sb
	}
	for name, tc := range map[string]struct {
		from, to int
		steps    []StepBounds
	}{
		"another range":        {0, 2000, at(s, 0, 0)},
		"another memory":       {0, 0, at(other, 0, 0)},
		"one query short":      {0, 0, at(s, 0, 0)[:1]},
		"To 0 is N, not 2999":  {0, 2999, at(s, 0, 0)},
		"a range's own bounds": {10, 20, at(s, 10, 21)},
	} {
		if _, err := s.Search(context.Background(), qs, SearchOptions{TopK: 3, From: tc.from, To: tc.to, Steps: tc.steps}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for _, rg := range [][2]int{{-1, 0}, {10, 5}, {0, 3001}} {
		if _, err := s.BoundSteps(qs, rg[0], rg[1]); err == nil {
			t.Errorf("BoundSteps [%d, %d): no error", rg[0], rg[1])
		}
	}
	if _, err := s.BoundSteps([]Query{{X: make([]float32, 7), Token: 0}}, 0, 0); err == nil {
		t.Error("BoundSteps with a short query: no error")
	}
	// The bounds given back are the ones Search computes: the same answer, the same reads.
	want, err := s.Search(context.Background(), qs, SearchOptions{TopK: 3, From: 10, To: 2500, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Search(context.Background(), qs, SearchOptions{TopK: 3, From: 10, To: 2500, Workers: 1, Steps: at(s, 10, 2500)})
	if err != nil || got[0].Stats != want[0].Stats {
		t.Fatalf("given bounds: stats %+v, want %+v (%v)", got[0].Stats, want[0].Stats, err)
	}
}

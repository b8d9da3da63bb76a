package dualmem

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/lm"
)

func TestRoundTrip(t *testing.T) {
	for _, p := range []Precision{F32, F16} {
		t.Run(string(p), func(t *testing.T) {
			tol := 0.0
			if p == F16 {
				tol = 1e-3
			}
			rng := rand.New(rand.NewPCG(1, 2))
			dir := t.TempDir()
			meta := testMeta(p)
			init := testInitial(meta, rng)
			s, err := Create(dir, meta, []byte("hello corpus"), init, nil)
			if err != nil {
				t.Fatal(err)
			}
			steps := appendSteps(t, s, 1, 3, rng)
			ckpt := bytes.Repeat([]byte("ckpt"), 3<<20/4*2) // 6 MB: lands in the value log
			if err := s.Commit(3, ckpt); err != nil {
				t.Fatal(err)
			}
			r := reopenReadOnly(t, s, dir)
			checkStore(t, r, meta, init, steps, tol)
			step, blob, err := r.Checkpoint()
			if err != nil || step != 3 || !bytes.Equal(blob, ckpt) {
				t.Fatalf("Checkpoint: step %d, %d bytes, %v", step, len(blob), err)
			}
			if err := r.AppendStep(steps[0]); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("AppendStep on read-only store: %v", err)
			}
		})
	}
}

func checkStore(t *testing.T, r *Store, meta Meta, init map[string]lm.Initial, steps []*lm.Step, tol float64) {
	t.Helper()
	got := r.Meta()
	if got.Format != FormatVersion || got.Precision != meta.Precision || len(got.Layers) != 2 ||
		got.Layers[1] != meta.Layers[1] || string(got.Config) != string(meta.Config) || got.Optimizer.Momentum != 0.9 {
		t.Fatalf("Meta = %+v", got)
	}
	if string(r.Corpus()) != "hello corpus" || r.Steps() != len(steps) {
		t.Fatalf("Corpus %q, Steps %d", r.Corpus(), r.Steps())
	}
	for name, want := range init {
		in, err := r.Initial(name)
		if err != nil {
			t.Fatal(err)
		}
		closeEnough(t, name+" W", in.W, want.W, 0) // always float32
		closeEnough(t, name+" B", in.B, want.B, 0)
	}
	infos, err := r.StepInfos()
	if err != nil || len(infos) != len(steps) || infos[1] != steps[1].StepInfo {
		t.Fatalf("StepInfos = %+v, %v", infos, err)
	}
	st, err := r.ReadStep(2)
	if err != nil {
		t.Fatal(err)
	}
	if st.StepInfo != steps[1].StepInfo || len(st.Layers) != 2 || st.Offsets[3] != steps[1].Offsets[3] ||
		st.Targets[5] != steps[1].Targets[5] {
		t.Fatalf("ReadStep(2) = %+v", st.StepInfo)
	}
	closeEnough(t, "step 2 keys", st.Layers["out"].Keys, steps[1].Layers["out"].Keys, tol)
	closeEnough(t, "step 2 grads", st.Layers["out"].Grads, steps[1].Layers["out"].Grads, tol)
	if st, err := r.ReadStep(1, "out"); err != nil || len(st.Layers) != 1 {
		t.Fatalf("ReadStep(1, out): %v", err)
	}
	for _, bad := range []int{0, len(steps) + 1} {
		if _, err := r.ReadStep(bad); !errors.Is(err, ErrNotFound) {
			t.Fatalf("ReadStep(%d): %v", bad, err)
		}
	}
	if _, err := r.ReadStep(1, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadStep unknown layer: %v", err)
	}
	checkLoadLayer(t, r, steps, tol)
	sizes, err := r.Sizes()
	if err != nil || sizes["out"] <= 0 || sizes["block0.ff1"] <= sizes["out"] || sizes[SizeDisk] <= 0 ||
		sizes[SizeCheckpoint] < 6<<20 || sizes[SizeCorpus] <= 0 {
		t.Fatalf("Sizes = %v, %v", sizes, err)
	}
}

func checkLoadLayer(t *testing.T, r *Store, steps []*lm.Step, tol float64) {
	t.Helper()
	calls := 0
	m, err := r.LoadLayer("block0.ff1", func(done, total int) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if calls != len(steps) || len(m.Steps) != len(steps) || m.Spec.DIn != 4 {
		t.Fatalf("LoadLayer: %d progress calls, %d steps", calls, len(m.Steps))
	}
	var keys, grads []float32
	var offsets []int64
	j := 0
	for _, st := range steps {
		ls := st.Layers["block0.ff1"]
		keys, grads = append(keys, ls.Keys...), append(grads, ls.Grads...)
		offsets = append(offsets, st.Offsets...)
		for i := range st.Tokens() {
			if m.Step[j] != int32(st.Step) || m.Rows[j] != int32(i/st.Ctx) || m.Pos[j] != int32(i%st.Ctx) ||
				m.Targets[j] != st.Targets[i] {
				t.Fatalf("token %d: step %d row %d pos %d target %d", j, m.Step[j], m.Rows[j], m.Pos[j], m.Targets[j])
			}
			j++
		}
	}
	if m.Tokens() != j || !equalInts(m.Offsets, offsets) {
		t.Fatalf("LoadLayer: %d tokens, offsets %v", m.Tokens(), m.Offsets)
	}
	closeEnough(t, "slab keys", m.Keys, keys, tol)
	closeEnough(t, "slab grads", m.Grads, grads, tol)
	if _, err := r.LoadLayer("nope", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadLayer unknown: %v", err)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCommitDiscard(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	dir := t.TempDir()
	s := mustCreate(t, dir, testMeta(F32), rng)
	if _, _, err := s.Checkpoint(); !errors.Is(err, ErrNoModel) {
		t.Fatalf("Checkpoint before commit: %v", err)
	}
	appendSteps(t, s, 1, 3, rng)
	if err := s.Commit(3, []byte("at 3")); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, 4, 5, rng) // the run is "killed" after these
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Steps() != 3 {
		t.Fatalf("Steps = %d after reopen, want 3", s.Steps())
	}
	if _, err := s.ReadStep(4); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadStep(4) of an uncommitted step: %v", err)
	}
	if infos, _ := s.StepInfos(); len(infos) != 3 {
		t.Fatalf("StepInfos: %d", len(infos))
	}
	if m, err := s.LoadLayer("out", nil); err != nil || len(m.Steps) != 3 {
		t.Fatalf("LoadLayer: %v", err)
	}
	for range 2 { // idempotent
		if err := s.DiscardUncommitted(); err != nil {
			t.Fatal(err)
		}
	}
	if keys, err := s.keysAbove(3); err != nil || len(keys) != 0 {
		t.Fatalf("%d records above step 3 after discard (%v)", len(keys), err)
	}
	if err := s.AppendStep(makeStep(s.Meta(), 5, 1, 4, rng)); err == nil {
		t.Fatal("AppendStep(5) after commit 3 accepted")
	}
	fresh := appendSteps(t, s, 4, 4, rng)[0]
	if err := s.Commit(2, nil); err == nil {
		t.Fatal("Commit below the committed step accepted")
	}
	if err := s.Commit(5, nil); err == nil {
		t.Fatal("Commit beyond the appended step accepted")
	}
	if err := s.Commit(4, []byte("at 4")); err != nil {
		t.Fatal(err)
	}
	st, err := s.ReadStep(4)
	if err != nil {
		t.Fatal(err)
	}
	closeEnough(t, "new step 4", st.Layers["out"].Keys, fresh.Layers["out"].Keys, 0)
	if step, blob, err := s.Checkpoint(); step != 4 || string(blob) != "at 4" || err != nil {
		t.Fatalf("Checkpoint = %d %q %v", step, blob, err)
	}
}

// TestChunks exercises blobs split over several chunks, and a rewrite with fewer chunks.
func TestChunks(t *testing.T) {
	old := chunkSize
	chunkSize = 100
	defer func() { chunkSize = old }()
	rng := rand.New(rand.NewPCG(5, 6))
	dir := t.TempDir()
	s := mustCreate(t, dir, testMeta(F16), rng)
	defer s.Close()
	steps := appendSteps(t, s, 1, 2, rng)
	long := bytes.Repeat([]byte("x"), 1000)
	if err := s.Commit(1, long); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(2, []byte("short, still more than one chunk of a hundred bytes, "+
		"which this sentence makes sure of by going on for a while.")); err != nil {
		t.Fatal(err)
	}
	if _, blob, err := s.Checkpoint(); err != nil || !strings.HasPrefix(string(blob), "short") || len(blob) > 200 {
		t.Fatalf("Checkpoint after shorter rewrite: %q %v", blob, err)
	}
	checkLoadLayer(t, s, steps, 1e-3)
}

func TestAppendValidation(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	s := mustCreate(t, t.TempDir(), testMeta(F32), rng)
	defer s.Close()
	meta := s.Meta()
	bad := map[string]func(*lm.Step){
		"step number":  func(st *lm.Step) { st.Step = 2 },
		"rows":         func(st *lm.Step) { st.Rows = 0 },
		"offsets":      func(st *lm.Step) { st.Offsets = st.Offsets[1:] },
		"targets":      func(st *lm.Step) { st.Targets = nil },
		"missing":      func(st *lm.Step) { delete(st.Layers, "out") },
		"extra":        func(st *lm.Step) { st.Layers["extra"] = st.Layers["out"] },
		"keys":         func(st *lm.Step) { ls := st.Layers["out"]; ls.Keys = ls.Keys[1:]; st.Layers["out"] = ls },
		"grads":        func(st *lm.Step) { ls := st.Layers["out"]; ls.Grads = nil; st.Layers["out"] = ls },
		"nan lr":       func(st *lm.Step) { st.LR = float32(nan()) },
		"renamed step": func(st *lm.Step) { st.Layers["Out"] = st.Layers["out"]; delete(st.Layers, "out") },
	}
	for name, mod := range bad {
		st := makeStep(meta, 1, 2, 3, rng)
		mod(st)
		if err := s.AppendStep(st); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	appendSteps(t, s, 1, 1, rng)
}

func nan() float64 { z := 0.0; return z / z }

func TestCreateValidation(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	cases := map[string]func(*Meta, map[string]lm.Initial){
		"precision": func(m *Meta, _ map[string]lm.Initial) { m.Precision = "bf16" },
		"no layers": func(m *Meta, in map[string]lm.Initial) { m.Layers = nil; clear(in) },
		"empty name": func(m *Meta, in map[string]lm.Initial) {
			m.Layers[1].Name = ""
			in[""] = in["out"]
			delete(in, "out")
		},
		"duplicate":  func(m *Meta, _ map[string]lm.Initial) { m.Layers[0].Name = "out" },
		"dims":       func(m *Meta, _ map[string]lm.Initial) { m.Layers[1].DOut = 0 },
		"shape":      func(m *Meta, in map[string]lm.Initial) { in["out"] = lm.Initial{W: in["out"].W[1:], B: in["out"].B} },
		"bias shape": func(m *Meta, in map[string]lm.Initial) { in["out"] = lm.Initial{W: in["out"].W} },
		"no initial": func(m *Meta, in map[string]lm.Initial) { delete(in, "out") },
		"stray":      func(m *Meta, in map[string]lm.Initial) { in["other"] = in["out"] },
		"momentum":   func(m *Meta, _ map[string]lm.Initial) { m.Optimizer.Momentum = 1 },
		"decay":      func(m *Meta, _ map[string]lm.Initial) { m.Optimizer.WeightDecay = -1 },
	}
	for name, mod := range cases {
		meta := testMeta(F32)
		meta.Layers = append([]LayerSpec(nil), meta.Layers...)
		in := testInitial(meta, rng)
		mod(&meta, in)
		dir := filepath.Join(t.TempDir(), "d")
		if s, err := Create(dir, meta, nil, in, nil); err == nil {
			s.Close()
			t.Errorf("%s: accepted", name)
		} else if _, serr := os.Stat(dir); serr == nil {
			t.Errorf("%s: rejected (%v) but created the directory", name, err)
		}
	}
}

package dualmem

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// A training run that skips the derived files writes none, and the first read-write open
// that reads the memory builds them: the aggregates on Memory, the bounds on open.
func TestSkipDerived(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(9, 9))
	s := mustCreate(t, dir, testMeta(F32), rng)
	if err := s.SkipDerived(); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, 1, 4, rng)
	if err := s.Commit(4, []byte("c4")); err != nil {
		t.Fatal(err)
	}
	layers := s.Meta().Layers
	for _, l := range layers {
		for _, ext := range []string{".agg", ".bounds"} {
			if _, err := os.Stat(filepath.Join(dir, SegmentsDir, l.Name+ext)); !os.IsNotExist(err) {
				t.Fatalf("%s%s written during training: %v", l.Name, ext, err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mems := sameMemory(t, w, 4)
	for li, m := range mems {
		sc := NewScanner(m, w.Meta())
		if err := sc.HasAggregates(); err != nil {
			t.Fatalf("%s: aggregates not built on first read: %v", layers[li].Name, err)
		}
		if m.bounds == nil {
			t.Fatalf("%s: bounds not built on open", layers[li].Name)
		}
	}
}

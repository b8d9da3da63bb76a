package dualmem

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// A segments-only store writes the same segment files, aggregates and bounds as the store
// of record fed the same steps, keeps no keys or gradients in its database, reads its memory
// back from the segments, and refuses what would need the vectors from the database.
func TestSegmentsOnly(t *testing.T) {
	full, only := testMeta(F32), testMeta(F32)
	only.SegmentsOnly = true
	dirs := map[bool]string{}
	for _, meta := range []Meta{full, only} {
		dir := filepath.Join(t.TempDir(), "d")
		s := mustCreate(t, dir, meta, rand.New(rand.NewPCG(1, 2)))
		appendSteps(t, s, 1, 12, rand.New(rand.NewPCG(3, 4)))
		if err := s.Commit(12, []byte("ckpt")); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		dirs[meta.SegmentsOnly] = dir
	}
	ents, err := os.ReadDir(filepath.Join(dirs[false], SegmentsDir))
	if err != nil || len(ents) < 2*len(full.Layers)+nTokenFiles+1 {
		t.Fatalf("segment files %v: %v", ents, err)
	}
	for _, e := range ents {
		a, errA := os.ReadFile(filepath.Join(dirs[false], SegmentsDir, e.Name()))
		b, errB := os.ReadFile(filepath.Join(dirs[true], SegmentsDir, e.Name()))
		if err := errors.Join(errA, errB); err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: %d and %d bytes differ (%v)", e.Name(), len(a), len(b), err)
		}
	}

	ref, err := OpenReadOnly(dirs[false])
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	s, err := Open(dirs[true])
	if err != nil {
		t.Fatal(err)
	}
	if !s.Meta().SegmentsOnly || s.Steps() != 12 {
		t.Fatalf("meta %+v, %d steps", s.Meta(), s.Steps())
	}
	want, err := ref.Memory(12, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Memory(12, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		closeEnough(t, "keys", got[i].Keys, want[i].Keys, 0)
		closeEnough(t, "grads", got[i].Grads, want[i].Grads, 0)
		if got[i].aggErr != nil || got[i].bounds == nil {
			t.Errorf("layer %s: aggregates %v, bounds %v", got[i].Spec.Name, got[i].aggErr, got[i].bounds != nil)
		}
	}
	sizes, err := s.Sizes()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range only.Layers {
		if sizes[l.Name] != 0 {
			t.Errorf("the database holds %d bytes of layer %s", sizes[l.Name], l.Name)
		}
	}
	if _, err := s.ReadStep(3); !errors.Is(err, ErrSegmentsOnly) {
		t.Errorf("ReadStep: %v", err)
	}
	if _, err := s.LoadLayer("out", nil); !errors.Is(err, ErrSegmentsOnly) {
		t.Errorf("LoadLayer: %v", err)
	}
	if err := s.RebuildSegments(nil); !errors.Is(err, ErrSegmentsOnly) {
		t.Errorf("RebuildSegments: %v", err)
	}
	if err := s.SkipDerived(); !errors.Is(err, ErrSegmentsOnly) {
		t.Errorf("SkipDerived: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Without its segment files nothing can be answered, and the error says why.
	if err := os.Remove(filepath.Join(dirs[true], SegmentsDir, segIndexName)); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dirs[true])
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Memory(12, nil); !errors.Is(err, ErrSegmentsOnly) {
		t.Errorf("Memory without segment files: %v", err)
	}
	err = s.AppendStep(makeStep(only, 13, 1, 4, rand.New(rand.NewPCG(5, 6))))
	if err == nil {
		err = s.Flush()
	}
	if !errors.Is(err, ErrSegmentsOnly) {
		t.Errorf("a step appended without segment files: %v", err)
	}
}

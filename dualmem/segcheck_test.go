package dualmem

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// A byte changed in the middle of a layer's segment file, which opening does not read, is
// found by CheckSegments, named by layer and step; a rebuild from the database restores the
// committed memory, while memories handed out before keep reading.
func TestCheckSegmentsFindsMidFileDamage(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	s := mustCreate(t, dir, testMeta(F32), rng)
	defer s.Close()
	appendSteps(t, s, 1, 6, rng)
	if err := s.Commit(6, []byte("c6")); err != nil {
		t.Fatal(err)
	}
	calls := 0
	if err := s.CheckSegments(context.Background(), func(done, total int) { calls++ }); err != nil || calls != 6 {
		t.Fatalf("intact: %v after %d progress calls", err, calls)
	}
	before := sameMemory(t, s, 6)
	layer := s.Meta().Layers[1]
	sg := s.segments()
	path := filepath.Join(dir, SegmentsDir, layer.Name+".keys")
	at := sg.starts[3]*int64(4*layer.DIn) + 5 // inside step 4
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
	f.Close()

	err = s.CheckSegments(context.Background(), nil)
	var se *SegmentError
	if !errors.As(err, &se) || se.Layer != layer.Name || se.Step != 4 {
		t.Fatalf("damaged step 4 of %s: %v", layer.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.CheckSegments(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if err := s.RebuildSegments(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSegments(context.Background(), nil); err != nil {
		t.Fatalf("after the rebuild: %v", err)
	}
	sameMemory(t, s, 6)
	if len(before[0].Keys) == 0 || before[0].Keys[0] != before[0].Keys[0] {
		t.Fatal("a memory handed out before the rebuild stopped reading")
	}

	r, err := OpenReadOnly(t.TempDir())
	if err == nil {
		defer r.Close()
		if err := r.RebuildSegments(nil); err == nil {
			t.Fatal("a read-only store rebuilt its segment files")
		}
	}
}

package dualmem

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sameMemory checks that Memory(steps) holds exactly what LoadLayer reads from the database.
func sameMemory(t *testing.T, s *Store, steps int) []*LayerMemory {
	t.Helper()
	mems, err := s.Memory(steps, nil)
	if err != nil {
		t.Fatal(err)
	}
	for li, spec := range s.Meta().Layers {
		want, err := s.LoadLayer(spec.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want, err = want.Prefix(steps); err != nil {
			t.Fatal(err)
		}
		got := mems[li]
		if got.Spec != spec || len(got.Steps) != steps || got.Tokens() != want.Tokens() {
			t.Fatalf("%s: %d steps, %d tokens; want %d, %d", spec.Name, len(got.Steps), got.Tokens(), steps, want.Tokens())
		}
		closeEnough(t, spec.Name+" keys", got.Keys, want.Keys, 0)
		closeEnough(t, spec.Name+" grads", got.Grads, want.Grads, 0)
		// The views for reads out of order are the same bytes through another mapping.
		closeEnough(t, spec.Name+" keys, random reads", got.randomKeys(), want.Keys, 0)
		closeEnough(t, spec.Name+" grads, random reads", got.randomGrads(), want.Grads, 0)
		if p, err := got.Prefix(1); err != nil || len(p.randomKeys()) != len(p.Keys) || len(p.randomGrads()) != len(p.Grads) {
			t.Fatalf("%s: a prefix's random views: %v", spec.Name, err)
		}
		closeEnough(t, spec.Name+" initial", got.Initial.W, want.Initial.W, 0)
		if !equalInts(got.Offsets, want.Offsets) {
			t.Fatalf("%s: offsets differ", spec.Name)
		}
		for j := range want.Step {
			if got.Step[j] != want.Step[j] || got.Rows[j] != want.Rows[j] || got.Pos[j] != want.Pos[j] || got.Targets[j] != want.Targets[j] {
				t.Fatalf("%s: token %d differs", spec.Name, j)
			}
		}
	}
	return mems
}

func TestMemoryMatchesDatabase(t *testing.T) {
	for _, p := range []Precision{F32, F16} {
		t.Run(string(p), func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(1, 2))
			s := mustCreate(t, dir, testMeta(p), rng)
			appendSteps(t, s, 1, 3, rng)
			if err := s.Commit(3, []byte("c3")); err != nil {
				t.Fatal(err)
			}
			old := sameMemory(t, s, 3)
			if m := old[0]; m.rKeys == nil || m.rGrads == nil || &m.rKeys[0] == &m.Keys[0] {
				t.Fatal("no separate mapping for random reads")
			}
			sameMemory(t, s, 2)
			// Live training: later commits extend the open memory; the earlier views stay valid.
			appendSteps(t, s, 4, 9, rng)
			if err := s.Commit(9, []byte("c9")); err != nil {
				t.Fatal(err)
			}
			mems := sameMemory(t, s, 9)
			if &mems[0].Keys[0] != &old[0].Keys[0] {
				t.Fatal("the memory of 9 steps is a copy, not the same mapping")
			}
			// The indexes of one Memory call are file-backed and shared by its layers, and
			// Release unmaps them without touching another call's.
			if old[0].arena.Mapped() == 0 || old[1].arena != old[0].arena || mems[0].arena == old[0].arena {
				t.Fatal("the per-token indexes are not one file-backed arena per Memory call")
			}
			if ents, _ := filepath.Glob(filepath.Join(dir, ".spotlight-index-*")); len(ents) != 0 {
				t.Fatalf("index files left in the directory: %v", ents)
			}
			if err := old[1].Release(); err != nil || old[0].arena.Mapped() != 0 {
				t.Fatalf("Release: %v, %d bytes still mapped", err, old[0].arena.Mapped())
			}
			if got := NewScanner(mems[0], s.Meta()).SameOffset(mems[0].Offsets[0]); len(got) == 0 {
				t.Fatal("the later memory's offset index lost its tokens")
			}
			if _, err := s.Memory(10, nil); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Memory past the committed step: %v", err)
			}
			r := reopenReadOnly(t, s, dir)
			if r.segments() == nil {
				t.Fatal("valid segment files not opened")
			}
			sameMemory(t, r, 9)
			closeEnough(t, "old view after close", old[0].Keys, mems[0].Keys[:len(old[0].Keys)], 0)
		})
	}
}

// TestSegmentsRebuilt: missing segment files are built from the database on first use, and a
// read-only store without them reads the memory onto the heap.
func TestSegmentsRebuilt(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	s := mustCreate(t, dir, testMeta(F32), rng)
	appendSteps(t, s, 1, 4, rng)
	if err := s.Commit(4, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.RemoveAll(filepath.Join(dir, SegmentsDir)); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameMemory(t, r, 4)
	if r.segments() != nil {
		t.Fatal("a read-only store built segment files")
	}
	r.Close()

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	calls := 0
	if err := s.PrepareSegments(func(layer string, done, total int) { calls++ }); err != nil {
		t.Fatal(err)
	}
	if calls != 2*4 || s.segments() == nil {
		t.Fatalf("rebuild: %d progress calls, segments %v", calls, s.segments())
	}
	sameMemory(t, s, 4)
	// Appends continue after a rebuild.
	appendSteps(t, s, 5, 6, rng)
	if err := s.Commit(6, nil); err != nil {
		t.Fatal(err)
	}
	sameMemory(t, s, 6)
}

// TestTornSegment: a truncated or corrupt segment file is reported naming its layer and
// step, then rebuilt from the database; nothing committed is lost.
func TestTornSegment(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		tear       func(t *testing.T, seg string)
	}{
		{"truncated grads", `layer "out" (out.grads): truncated at step 5`, func(t *testing.T, seg string) {
			truncateBy(t, filepath.Join(seg, "out.grads"), 4)
		}},
		{"truncated offsets", `token arrays (offsets.i64): truncated at step 2`, func(t *testing.T, seg string) {
			truncateTo(t, filepath.Join(seg, "offsets.i64"), 8*10) // step 1 has 8 tokens
		}},
		{"corrupt last step", `layer "block0.ff1": step 5: checksum mismatch`, func(t *testing.T, seg string) {
			flipLastByte(t, filepath.Join(seg, "block0.ff1.keys"))
		}},
		{"torn index", `holds 4 of 5 committed steps (torn at step 5)`, func(t *testing.T, seg string) {
			truncateBy(t, filepath.Join(seg, segIndexName), 3)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(7, 8))
			s := mustCreate(t, dir, testMeta(F32), rng)
			appendSteps(t, s, 1, 5, rng)
			if err := s.Commit(5, nil); err != nil {
				t.Fatal(err)
			}
			s.Close()
			seg := filepath.Join(dir, SegmentsDir)
			tc.tear(t, seg)
			r, err := OpenReadOnly(dir)
			if err != nil {
				t.Fatal(err)
			}
			si, err := r.StepInfos()
			if err != nil {
				t.Fatal(err)
			}
			_, err = openSegments(seg, r.Meta(), si, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("openSegments: %v, want %q", err, tc.want)
			}
			if r.segments() != nil {
				t.Fatal("a torn segment was opened")
			}
			sameMemory(t, r, 5) // from the database
			r.Close()
			s, err = Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.PrepareSegments(nil); err != nil {
				t.Fatal(err)
			}
			if _, err := openSegments(seg, s.Meta(), si, false); err != nil {
				t.Fatalf("after the rebuild: %v", err)
			}
			sameMemory(t, s, 5)
		})
	}
}

func truncateBy(t *testing.T, path string, n int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	truncateTo(t, path, fi.Size()-n)
}

func truncateTo(t *testing.T, path string, n int64) {
	t.Helper()
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
}

func flipLastByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestKilledRunSegments: after a writer is killed with steps appended beyond its last
// commit, the segment files still open, hold exactly the committed steps, and take the next
// appends.
func TestKilledRunSegments(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DUALMEM_CRASH_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child: %v\n%s", err, out)
	}
	r, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.segments() == nil || r.segments().steps() != 3 {
		t.Fatalf("segments after the kill: %v", r.segments())
	}
	sameMemory(t, r, 3)
	r.Close()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.DiscardUncommitted(); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, 4, 4, rand.New(rand.NewPCG(8, 8)))
	if err := s.Commit(4, nil); err != nil {
		t.Fatal(err)
	}
	sameMemory(t, s, 4)
}

package dualmem

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCrashHelper is the child of TestKilledRun: it dies without closing the store.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv("DUALMEM_CRASH_DIR")
	if dir == "" {
		t.Skip("child process of TestKilledRun")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	s := mustCreate(t, dir, testMeta(F32), rng)
	appendSteps(t, s, 1, 3, rng)
	if err := s.Commit(3, []byte("at 3")); err != nil {
		t.Fatal(err)
	}
	appendSteps(t, s, 4, 5, rng)
	if err := s.flush(5); err != nil {
		t.Fatal(err)
	}
	os.Exit(3)
}

func TestKilledRun(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DUALMEM_CRASH_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child: %v\n%s", err, out)
	}
	r, err := OpenReadOnly(dir) // Badger needs a write-mode open to replay: done inside
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadStep(4); r.Steps() != 3 || !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the kill: Steps %d, ReadStep(4): %v", r.Steps(), err)
	}
	if _, blob, err := r.Checkpoint(); err != nil || string(blob) != "at 3" {
		t.Fatalf("Checkpoint: %q %v", blob, err)
	}
	r.Close()

	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.DiscardUncommitted(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(8, 8))
	fresh := appendSteps(t, s, 4, 4, rng)[0]
	if err := s.Commit(4, []byte("at 4")); err != nil {
		t.Fatal(err)
	}
	st, err := s.ReadStep(4, "block0.ff1")
	if err != nil {
		t.Fatal(err)
	}
	closeEnough(t, "step 4 grads", st.Layers["block0.ff1"].Grads, fresh.Layers["block0.ff1"].Grads, 0)
}

// A writer killed between creating a memtable file and sizing it leaves a zero-length one:
// every kind of open still takes the directory up, and it holds what was committed.
func TestEmptyMemtableLeftByKill(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 6))
	s := mustCreate(t, dir, testMeta(F32), rng)
	appendSteps(t, s, 1, 2, rng)
	if err := s.Commit(2, []byte("at 2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func(string) (*Store, error){"OpenReadOnly": OpenReadOnly, "Open": Open} {
		if err := os.WriteFile(filepath.Join(dir, "db", "00099.mem"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := open(dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Steps() != 2 {
			t.Fatalf("%s: Steps %d, want 2", name, s.Steps())
		}
		s.Close()
	}
	if err := os.WriteFile(filepath.Join(dir, "db", "00099.mem"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkCreatable(dir); !errors.Is(err, ErrExists) {
		t.Fatalf("checkCreatable: %v, want ErrExists", err)
	}
}

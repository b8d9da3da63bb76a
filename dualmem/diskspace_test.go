package dualmem

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// withFree makes the data directory's filesystem report free() bytes available.
func withFree(t *testing.T, free func() int64) {
	t.Helper()
	old := freeSpace
	freeSpace = func(string) (int64, error) { return free(), nil }
	t.Cleanup(func() { freeSpace = old })
}

// The store refuses a step, and a commit, that would eat into the room kept for the
// commit and close after it; a refused write changes nothing and is not sticky.
func TestDiskFullRefusesWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	dir := t.TempDir()
	s := mustCreate(t, dir, testMeta(F32), rng)
	defer s.Close()
	appendSteps(t, s, 1, 2, rng)
	if err := s.Commit(2, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(2); err != nil {
		t.Fatal(err)
	}
	st := makeStep(s.Meta(), 3, 2, 4, rng)
	need := stepBytes(s.meta, 8) + s.reserve()
	if need < memTableSize+diskSlack+1000 {
		t.Fatalf("need %d bytes: no room kept for a memtable flush and the checkpoint", need)
	}
	free := need - 1
	withFree(t, func() int64 { return free })
	for _, err := range []error{s.Room(8), s.AppendStep(st)} {
		if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "disk full: need ") ||
			!strings.Contains(err.Error(), " MB free") {
			t.Fatalf("one byte short: %v", err)
		}
	}
	if s.lastAppended() != 2 {
		t.Fatalf("refused step was queued: last appended %d", s.lastAppended())
	}
	free = need
	if err := s.Room(8); err != nil {
		t.Fatalf("exactly enough: %v", err)
	}
	if err := s.AppendStep(st); err != nil {
		t.Fatalf("exactly enough: %v", err)
	}
	free = 1 << 20
	if err := s.Commit(3, make([]byte, 1000)); !errors.Is(err, ErrDiskFull) || s.Steps() != 2 {
		t.Fatalf("commit with 1 MB free: %v, committed %d", err, s.Steps())
	}
	free = 1 << 40
	if err := s.Commit(3, make([]byte, 1000)); err != nil || s.Steps() != 3 {
		t.Fatalf("commit once there is room: %v, committed %d", err, s.Steps())
	}
}

// A read-write open of a directory without room for what the open writes fails with one
// line; a read-only open of a cleanly closed one still works, because it writes nothing.
func TestDiskFullOpen(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	dir := t.TempDir()
	mustCreate(t, dir, testMeta(F32), rng).Close()
	withFree(t, func() int64 { return 0 })
	if _, err := Open(dir); !errors.Is(err, ErrDiskFull) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Open on a full disk: %v", err)
	}
	if _, err := Create(filepath.Join(t.TempDir(), "new"), testMeta(F32), nil, testInitial(testMeta(F32), rng), nil); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Create on a full disk: %v", err)
	}
	r, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatalf("OpenReadOnly on a full disk: %v", err)
	}
	r.Close()
}

// On a real tmpfs filled to the last byte, a directory a killed writer left is refused
// with one line instead of a SIGBUS in Badger's replay (tmpfs backs even a read of a
// sparse file's hole with a new page), and a cleanly closed one opens read-only.
func TestFullTmpfs(t *testing.T) {
	mnt := mountTmpfs(t, "size=64m")
	rng := rand.New(rand.NewPCG(9, 9))
	clean, killed := filepath.Join(mnt, "clean"), filepath.Join(mnt, "killed")
	mustCreate(t, clean, testMeta(F32), rng).Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DUALMEM_CRASH_DIR="+killed)
	if out, err := cmd.CombinedOutput(); !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	fill(t, mnt)
	for _, open := range []func(string) (*Store, error){Open, OpenReadOnly} {
		if _, err := open(killed); !errors.Is(err, ErrDiskFull) {
			t.Fatalf("open of a killed writer's directory on a full disk: %v", err)
		}
	}
	r, err := OpenReadOnly(clean)
	if err != nil {
		t.Fatalf("read-only open on a full disk: %v", err)
	}
	r.Close()
}

// mountTmpfs mounts a tmpfs with opts on a new directory, or skips the test.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, opts); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): needs root", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// fill writes a file until the filesystem holding dir has no byte left.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	if free, err := FreeBytes(dir); err != nil || free != 0 {
		t.Fatalf("filled: %d bytes free, %v", free, err)
	}
}

// A Create killed before its store was in place leaves DIR/db.creating: Open says no model
// is there (and why), and the next Create removes it and succeeds.
func TestKilledCreate(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	dir := t.TempDir()
	staging := filepath.Join(dir, CreatingDir)
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staging, "00001.mem"), make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrNoModel) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Open of a half-created dir: %v", err)
	}
	s, err := Create(dir, testMeta(F32), []byte("abc"), testInitial(testMeta(F32), rng), []byte("step 0"))
	if err != nil {
		t.Fatalf("Create over a half-created dir: %v", err)
	}
	defer s.Close()
	if _, err := os.Stat(staging); !os.IsNotExist(err) {
		t.Fatalf("staging dir still there: %v", err)
	}
	if step, blob, err := s.Checkpoint(); err != nil || step != 0 || string(blob) != "step 0" {
		t.Fatalf("Checkpoint after Create: %d %q %v", step, blob, err)
	}
}

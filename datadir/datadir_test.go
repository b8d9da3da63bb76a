package datadir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"golang.org/x/sys/unix"
)

func tinyConfig(t *testing.T) lm.Config {
	t.Helper()
	c, err := lm.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	c.D, c.Heads, c.Ctx, c.Batch, c.Steps, c.Warmup, c.CheckpointEvery = 16, 2, 16, 4, 10, 3, 4
	return c
}

// mustTrain creates a data directory and trains it to cfg.Steps.
func mustTrain(t *testing.T, cfg lm.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "d")
	dir, tr, err := Create(path, cfg, corpora.Default()[:20000])
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	defer tr.Close()
	if err := tr.Train(context.Background(), dir.Store, cfg.Steps, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVerifyAndStats(t *testing.T) {
	for _, precision := range []string{"f32", "f16"} {
		t.Run(precision, func(t *testing.T) {
			cfg := tinyConfig(t)
			cfg.Precision = precision
			dir, err := Open(mustTrain(t, cfg), true)
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()
			m, err := dir.Model()
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			rep, err := dir.Verify(m, 3, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(rep.Layers), len(cfg.LayerNames()); got != want {
				t.Fatalf("%d layers verified, want %d", got, want)
			}
			for _, l := range rep.Layers {
				limit := 1e-5
				if precision == "f16" {
					limit = dualmem.F16Tolerance
				}
				t.Logf("%s %s: max rel err %.3g", precision, l.Name, l.MaxRelErr)
				if !rep.OK || l.MaxRelErr > limit || l.Entries != cfg.Steps*cfg.Batch*cfg.Ctx {
					t.Errorf("%s: rel err %.3g, %d entries", l.Name, l.MaxRelErr, l.Entries)
				}
			}
			st, err := dir.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Step != cfg.Steps || st.EvalLoss <= 0 || st.DiskBytes <= 0 {
				t.Errorf("stats: %+v", st)
			}
		})
	}
}

func TestResumeContinuesFromCheckpoint(t *testing.T) {
	cfg := tinyConfig(t)
	path := mustTrain(t, cfg)
	dir, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	tr, err := dir.Resume()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Step != cfg.Steps {
		t.Fatalf("resumed at step %d, want %d", tr.Step, cfg.Steps)
	}
	if err := tr.Train(context.Background(), dir.Store, cfg.Steps+3, nil); err != nil {
		t.Fatal(err)
	}
	if got := dir.Store.Steps(); got != cfg.Steps+3 {
		t.Errorf("store at step %d", got)
	}
}

func TestOpenErrors(t *testing.T) {
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string
		want error
	}{
		{"missing", filepath.Join(t.TempDir(), "nope"), dualmem.ErrNoModel},
		{"empty", t.TempDir(), dualmem.ErrNoModel},
		{"foreign", foreign, dualmem.ErrNotSpotlight},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(tc.path, true); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// tipping is a data directory's store whose disk another process fills at the worst moment:
// when the disk is nearly full, it takes just enough between the trainer's room check and
// the step's append that the store refuses the step (a commit still fits).
type tipping struct {
	*dualmem.Store
	filler string
	tipped int // the step whose append was refused, 0 if none yet
}

func (m *tipping) AppendStep(st *lm.Step) error {
	// The trainer takes its careful path once room for 4 steps is gone; two steps later
	// (what the writer stored since it looked cannot hide that) this tips the disk.
	if m.tipped == 0 && m.Room(2*st.Tokens()) != nil {
		f, err := os.OpenFile(m.filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		for m.Room(st.Tokens()) == nil {
			if _, err := f.Write(make([]byte, 64<<10)); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		m.tipped = st.Step
	}
	return m.Store.AppendStep(st)
}

// On a real, nearly full tmpfs, training stops with "disk full" before the disk fills,
// having committed every step it trained (a step the store refuses is undone), and the
// directory still opens and verifies.
func TestTrainStopsBeforeDiskFull(t *testing.T) {
	for _, tip := range []bool{false, true} {
		t.Run(map[bool]string{false: "filling", true: "tipped"}[tip], func(t *testing.T) { trainToFullDisk(t, tip) })
	}
}

func trainToFullDisk(t *testing.T, tip bool) {
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=48m"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): needs root", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	cfg := tinyConfig(t)
	cfg.CheckpointEvery = 50
	path := filepath.Join(mnt, "d")
	dir, tr, err := Create(path, cfg, corpora.Default()[:20000])
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 22<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var mem lm.Memory = dir.Store
	tipper := &tipping{Store: dir.Store, filler: filepath.Join(mnt, "filler2")}
	if tip {
		mem = tipper
	}
	err = tr.Train(context.Background(), mem, 100000, nil)
	if !errors.Is(err, dualmem.ErrDiskFull) || !strings.HasPrefix(err.Error(), "disk full: need ") {
		t.Fatalf("Train on a filling disk: %v", err)
	}
	if got := dir.Store.Steps(); got != tr.Step || got < 10 {
		t.Fatalf("stopped at step %d with step %d committed: %v", tr.Step, got, err)
	}
	if tip {
		if tipper.tipped != tr.Step+1 {
			t.Fatalf("the append of step %d was refused, the trainer is at step %d", tipper.tipped, tr.Step)
		}
		if err := os.Remove(tipper.filler); err != nil { // the close needs its room back
			t.Fatal(err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil || st.Bavail*uint64(st.Bsize) < 16<<20 {
		t.Fatalf("%d bytes left for the close (%v)", st.Bavail*uint64(st.Bsize), err)
	}
	if err := dir.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	m, err := ro.Model()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if rep, err := ro.Verify(m, 2, nil); err != nil || !rep.OK || rep.Step != tr.Step {
		t.Fatalf("verify after the stop: %+v %v", rep, err)
	}
}

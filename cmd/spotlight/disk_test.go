package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A train killed at any moment while it creates its data directory leaves one that a
// fresh train or train --resume takes up; neither takes up a directory that is not
// Spotlight's.
func TestEarlyKill(t *testing.T) {
	corpus := corpusFile(t, 20000)
	args := func(data string) []string {
		return append([]string{"train", "--data", data, "--corpus", corpus, "--steps", "3"}, tinyFlags...)
	}
	for _, delay := range []int{0, 0, 500, 1000, 1000, 2000, 3000, 5000, 20000} {
		data := filepath.Join(t.TempDir(), "d")
		cmd := exec.Command(binary, args(data)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The directory appears once the model is compiled: kill it from then on.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
			if _, err := os.Stat(data); err == nil {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		time.Sleep(time.Duration(delay) * time.Microsecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		_, fresh, err := run(t, args(data)...)
		if err != nil {
			if !strings.Contains(fresh, "already holds a model") {
				t.Fatalf("killed %vµs in: fresh train: %v: %s", delay, err, fresh)
			}
			if _, e, err := run(t, "train", "--data", data, "--resume"); err != nil {
				t.Fatalf("killed %vµs in: resume: %v: %s", delay, err, e)
			}
		}
		if doc := verify(t, data); !doc.OK || doc.Step != 3 {
			t.Fatalf("killed %vµs in: then ok=%v step=%d", delay, doc.OK, doc.Step)
		}
	}
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, a := range [][]string{args(foreign), {"train", "--data", foreign, "--resume"}} {
		if _, e, err := run(t, a...); err == nil || !strings.Contains(e, "not a Spotlight data directory") {
			t.Fatalf("%v on a foreign dir: %v: %s", a, err, e)
		}
	}
}

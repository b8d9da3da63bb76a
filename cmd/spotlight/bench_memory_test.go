package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/bench/sweep"
)

// The size sweep builds a tiled memory on disk, answers every request shape on it and on a
// copy of the source, runs numpy over the same files when it can, and leaves no scratch.
func TestBenchMemory(t *testing.T) {
	python := "off"
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import numpy").Run() == nil {
			python = p
			break
		}
	}
	doc, _, scratch := benchMemory(t, "--source", mustTrain(t, 40), "--sizes", "6K", "--all-layer", "--python", python)
	if len(doc.Sizes) != 1 || doc.AllLayer == nil {
		t.Fatalf("want one size and the all-layer run: %+v, %+v", doc.Sizes, doc.AllLayer)
	}
	src, tiled := doc.AllLayer, doc.Sizes[0]
	if src.Skipped != "" || tiled.Skipped != "" {
		t.Fatalf("skipped: %q, %q", src.Skipped, tiled.Skipped)
	}
	// 40 steps of 4×16 tokens; the tiled memory repeats the first 39 to whole steps ≤ 6000.
	if src.Go.Memory != 40*64 || tiled.Go.Memory != 6000/64*64 || tiled.Go.Steps != 6000/64 {
		t.Errorf("memories of %d and %d tokens (%d steps)", src.Go.Memory, tiled.Go.Memory, tiled.Go.Steps)
	}
	if len(src.Go.Layers) != 3 || len(tiled.Go.Layers) != 1 || tiled.Go.Layers[0] != "out" {
		t.Errorf("layers %v and %v", src.Go.Layers, tiled.Go.Layers)
	}
	for _, r := range []*sweep.Measurement{src.Go, tiled.Go} {
		if len(r.Cases) != 4 || r.Model.P50Ms <= 0 {
			t.Fatalf("%d cases, model %v ms", len(r.Cases), r.Model.P50Ms)
		}
		for _, mc := range r.Cases {
			if len(mc.Warm.WallMs) != 1 || mc.Warm.P50Ms <= 0 || mc.Cold != nil || mc.RSS.Anon <= 0 {
				t.Errorf("%s/%s: %+v, RSS %+v", mc.Scan, mc.RankBy, mc.Warm, mc.RSS)
			}
			for name, st := range mc.Read {
				if want := r.Cases[0].Read[name].BytesTotal; st.BytesTotal != want || want%int64(r.Memory) != 0 {
					t.Errorf("%s/%s: %s's total %d bytes, the first case's %d", mc.Scan, mc.RankBy, name, st.BytesTotal, want)
				}
				if mc.Scan == "full" && st.BytesRead < st.BytesTotal {
					t.Errorf("%s/%s: a full scan of %s read %d of %d bytes", mc.Scan, mc.RankBy, name, st.BytesRead, st.BytesTotal)
				}
			}
		}
	}
	if python != "off" {
		var np numpyDoc
		if err := json.Unmarshal(tiled.Numpy, &np); err != nil {
			t.Fatalf("numpy: %v (%s)", err, tiled.NumpyErr)
		}
		if np.MaxRelDiff == nil || *np.MaxRelDiff > 1e-4 || np.Runs["warm"].P50Ms <= 0 {
			t.Errorf("numpy: %s", tiled.Numpy)
		}
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Errorf("scratch left: %v", ents)
	}
}

// Bad sizes are one line and build nothing.
func TestBenchMemoryBadInput(t *testing.T) {
	for _, args := range [][]string{{"--sizes", "4X"}, {"--sizes", "0"}, {"--reps", "0"}, {"--cold", "maybe"}, {"--segments-only", "yes"}} {
		scratch := t.TempDir()
		_, stderr, err := run(t, append([]string{"bench", "memory", "--source", scratch, "--scratch", scratch}, args...)...)
		if err == nil || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: err %v, stderr %q", args, err, stderr)
		}
		if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
			t.Errorf("%v: scratch holds %v", args, ents)
		}
	}
}

// --segments-only on builds the synthetic memory without the database copy; its row and
// its table say so, and it is measured as the store-path one is.
func TestBenchMemorySegmentsOnly(t *testing.T) {
	doc, table, _ := benchMemory(t, "--source", mustTrain(t, 40), "--sizes", "6K", "--segments-only", "on", "--python", "off")
	if len(doc.Sizes) != 1 || doc.Sizes[0].Skipped != "" || doc.Sizes[0].Go == nil {
		t.Fatalf("want one measured size: %+v", doc.Sizes)
	}
	s := doc.Sizes[0]
	if !strings.Contains(s.Synthetic, "segments-only") || !s.Go.SegmentsOnly || len(s.Go.Cases) != 4 || s.Go.Memory != 6000/64*64 {
		t.Errorf("synthetic %q, measured segments-only %v, %d cases, %d tokens", s.Synthetic, s.Go.SegmentsOnly, len(s.Go.Cases), s.Go.Memory)
	}
	if !strings.Contains(table, "out 6K tokens (tiled, synthetic: segments only)") {
		t.Errorf("table:\n%s", table)
	}
}

// benchMemory runs bench memory with args (one rep, warm only) and returns its document,
// its table and its scratch directory.
func benchMemory(t *testing.T, args ...string) (sweep.Doc, string, string) {
	t.Helper()
	scratch, dir := t.TempDir(), t.TempDir()
	out, md := filepath.Join(dir, "sweep.json"), filepath.Join(dir, "sweep.md")
	_, stderr, err := run(t, append([]string{"bench", "memory", "--reps", "1", "--cold", "off", "--scratch", scratch,
		"--json", out, "--markdown", md}, args...)...)
	if err != nil {
		t.Fatalf("bench memory: %v: %s", err, stderr)
	}
	var doc sweep.Doc
	b, err := os.ReadFile(out)
	if err == nil {
		err = json.Unmarshal(b, &doc)
	}
	table, errMD := os.ReadFile(md)
	if err := errors.Join(err, errMD); err != nil {
		t.Fatal(err)
	}
	return doc, string(table), scratch
}

// The measuring process's start-up-only mode reports start-up time and RSS and answers no
// request; the engine's per-token indexes leave no file in the data directory.
func TestBenchMemoryStartupOnly(t *testing.T) {
	data := mustTrain(t, 5)
	stdout, stderr, err := run(t, "bench", "memory", "--measure", data, "--measure-startup-only")
	if err != nil {
		t.Fatalf("bench memory --measure-startup-only: %v: %s", err, stderr)
	}
	var m sweep.Measurement
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if m.StartupS <= 0 || m.Startup.Anon <= 0 || m.Startup.File <= 0 || len(m.Cases) != 0 || m.Memory != 5*64 {
		t.Errorf("start-up %g s, RSS %+v, %d cases, %d tokens", m.StartupS, m.Startup, len(m.Cases), m.Memory)
	}
	if left, _ := filepath.Glob(filepath.Join(data, ".spotlight-index-*")); len(left) != 0 {
		t.Errorf("index files left behind: %v", left)
	}
}

package main

import (
	"encoding/json"
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
	data := mustTrain(t, 40)
	scratch, out := t.TempDir(), filepath.Join(t.TempDir(), "sweep.json")
	python := "python3"
	if exec.Command(python, "-c", "import numpy").Run() != nil {
		python = "off"
	}
	_, stderr, err := run(t, "bench", "memory", "--source", data, "--sizes", "6K", "--reps", "1", "--cold", "off",
		"--all-layer", "--scratch", scratch, "--python", python, "--json", out)
	if err != nil {
		t.Fatalf("bench memory: %v: %s", err, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc sweep.Doc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sizes) != 1 || doc.AllLayer == nil {
		t.Fatalf("want one size and the all-layer run:\n%s", b)
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
	for _, args := range [][]string{{"--sizes", "4X"}, {"--sizes", "0"}, {"--reps", "0"}, {"--cold", "maybe"}} {
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
	data := mustTrain(t, 40)
	scratch, out, md := t.TempDir(), filepath.Join(t.TempDir(), "sweep.json"), filepath.Join(t.TempDir(), "sweep.md")
	_, stderr, err := run(t, "bench", "memory", "--source", data, "--sizes", "6K", "--reps", "1", "--cold", "off",
		"--segments-only", "on", "--scratch", scratch, "--python", "off", "--json", out, "--markdown", md)
	if err != nil {
		t.Fatalf("bench memory: %v: %s", err, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc sweep.Doc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sizes) != 1 || doc.Sizes[0].Skipped != "" || doc.Sizes[0].Go == nil {
		t.Fatalf("want one measured size:\n%s", b)
	}
	s := doc.Sizes[0]
	if !strings.Contains(s.Synthetic, "segments-only") || !s.Go.SegmentsOnly || len(s.Go.Cases) != 4 || s.Go.Memory != 6000/64*64 {
		t.Errorf("synthetic %q, measured segments-only %v, %d cases, %d tokens", s.Synthetic, s.Go.SegmentsOnly, len(s.Go.Cases), s.Go.Memory)
	}
	table, err := os.ReadFile(md)
	if err != nil || !strings.Contains(string(table), "out 6K tokens (tiled, synthetic: segments only)") {
		t.Errorf("table: %v\n%s", err, table)
	}
}

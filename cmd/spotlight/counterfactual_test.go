package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCounterfactualCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	args := append([]string{"train", "--data", data, "--corpus", corpusFile(t, 20000), "--steps", "30",
		"--checkpoint-every", "5", "--checkpoint-keep-every", "10"}, tinyFlags...)
	if _, e, err := run(t, args...); err != nil {
		t.Fatalf("train: %v: %s", err, e)
	}
	out, e, err := run(t, "stats", "--data", data, "--json")
	if err != nil {
		t.Fatalf("stats: %v: %s", err, e)
	}
	var st struct {
		Kept      []struct{ Step int } `json:"kept_checkpoints"`
		KeptBytes int64                `json:"kept_checkpoint_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	var kept []int
	for _, k := range st.Kept {
		kept = append(kept, k.Step)
	}
	if !slices.Equal(kept, []int{0, 10, 20, 30}) || st.KeptBytes <= 0 {
		t.Errorf("stats: kept %v, %d bytes", kept, st.KeptBytes)
	}
	if out, e, err := run(t, "stats", "--data", data); err != nil || !strings.Contains(out, "checkpoints kept for retraining: 4, ") || !strings.Contains(out, "(steps 0 10 20 30)") {
		t.Errorf("stats: %v: %s%s", err, out, e)
	}

	out, e, err = run(t, "counterfactual", "--data", data, "--text", "the light of the sun", "--position", "12", "--top-k", "10", "--json")
	if err != nil {
		t.Fatalf("counterfactual: %v: %s", err, e)
	}
	var doc counterfactualDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Step != 30 || len(doc.Removed) != 10 || doc.ReplayedSteps != 30-doc.FromStep || doc.FromStep%10 != 0 ||
		!(doc.RealProb > 0 && doc.RealProb < 1) || !(doc.PredictedProb > 0 && doc.PredictedProb < 1) ||
		math.Abs(math.Log(doc.RealProb)-doc.RealLogP) > 1e-12 {
		t.Errorf("counterfactual: %+v", doc)
	}
	out, e, err = run(t, "counterfactual", "--data", data, "--text", "the light", "--position", "4", "--tokens", "3:1:2")
	if err != nil || !strings.Contains(out, "retrained without them: 30 steps from step 0") || !strings.Contains(out, "final weights minus") {
		t.Errorf("tokens: %v: %s%s", err, out, e)
	}
	for _, bad := range [][]string{
		{"--position", "9", "--top-k", "3"},
		{"--position", "4"},
		{"--position", "4", "--top-k", "3", "--tokens", "1:0:0"},
		{"--position", "4", "--tokens", "31:0:0"},
		{"--position", "4", "--tokens", "1:0"},
	} {
		_, e, err := run(t, append([]string{"counterfactual", "--data", data, "--text", "the light"}, bad...)...)
		if err == nil || strings.Count(strings.TrimSpace(e), "\n") != 0 {
			t.Errorf("%v: %v, stderr %q", bad, err, e)
		}
	}
}

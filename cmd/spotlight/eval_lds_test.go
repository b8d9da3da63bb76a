package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEvalLDS(t *testing.T) {
	corpus := corpusFile(t, 30000)
	out, stderr, err := run(t, "eval", "lds", "--corpus", corpus, "--d", "16", "--heads", "2", "--ctx", "16", "--batch", "4",
		"--steps", "30", "--subsets", "4", "--queries", "4", "--checkpoints", "1", "--singles", "1", "--json")
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	var doc struct {
		Queries    int      `json:"queries"`
		Subsets    int      `json:"subsets"`
		Drop       float64  `json:"drop"`
		NoiseFloor *float64 `json:"noise_floor"`
		Methods    []struct {
			Name    string     `json:"name"`
			Layers  string     `json:"layers"`
			LDS     *float64   `json:"lds"`
			CI      []*float64 `json:"ci"`
			Seconds float64    `json:"seconds"`
		} `json:"methods"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if doc.Queries != 4 || doc.Subsets != 4 || doc.Drop != 0.01 || doc.NoiseFloor == nil || len(doc.Methods) == 0 {
		t.Fatalf("document %s", out)
	}
	for _, m := range doc.Methods {
		if m.Name == "" || m.Layers == "" || len(m.CI) != 2 {
			t.Fatalf("method %+v in %s", m, out)
		}
	}
	_, stderr, err = run(t, "eval", "lds", "--corpus", corpus, "--drop", "2")
	if err == nil || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "--drop") {
		t.Fatalf("--drop 2: err %v, stderr %q", err, stderr)
	}
}

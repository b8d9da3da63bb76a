package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/api"
	"github.com/spotlight-lm/spotlight/datadir"
)

func TestInfluenceCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	args := append([]string{"train", "--data", data, "--corpus", corpusFile(t, 20000), "--steps", "20",
		"--checkpoint-every", "5", "--checkpoint-keep-every", "10"}, tinyFlags...)
	if _, e, err := run(t, args...); err != nil {
		t.Fatalf("train: %v: %s", err, e)
	}
	out, e, err := run(t, "influence", "--data", data, "--text", "the light of the sun", "--position", "12", "--top-k", "3", "--json")
	if err != nil {
		t.Fatalf("influence: %v: %s", err, e)
	}
	var doc datadir.InfluenceAnswer
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Step != 20 || doc.Token != " " || !slices.Equal(doc.Snapshots, []int{0, 10, 20}) || doc.Scored != 20*4*16 ||
		len(doc.Top) != 3 || len(doc.Supporting) != 3 || len(doc.Opposing) != 3 || !(doc.Prob > 0 && doc.Prob < 1) {
		t.Errorf("influence: %+v", doc)
	}
	for _, f := range []string{`"top"`, `"supporting"`, `"opposing"`, `"delta_loss_top"`, `"score"`, `"delta_loss"`,
		`"offset"`, `"context"`, `"target"`, `"step"`, `"row"`, `"pos"`, `"loss"`, `"snapshots"`} {
		if !strings.Contains(out, f) {
			t.Errorf("JSON lacks %s: %s", f, out)
		}
	}
	e0 := doc.Top[0]
	if e0.DeltaLoss != -e0.Score || e0.Target == "" {
		t.Errorf("top[0] = %+v", e0)
	}
	out, e, err = run(t, "influence", "--data", data, "--text", "the light", "--position", "4", "--step", "10")
	if err != nil || !strings.Contains(out, "model at step 10") || !strings.Contains(out, "supporting (removing raises the loss)") {
		t.Errorf("text: %v: %s%s", err, out, e)
	}
	for _, bad := range [][]string{
		{"--position", "9"},
		{"--position", "0"},
		{"--position", "4", "--top-k", "0"},
		{"--position", "4", "--top-k", "1001"},
		{"--position", "4", "--step", "15"},
		{"--position", "4", "--step", "21"},
	} {
		_, e, err := run(t, append([]string{"influence", "--data", data, "--text", "the light"}, bad...)...)
		if err == nil || strings.Count(strings.TrimSpace(e), "\n") != 0 {
			t.Errorf("%v: %v, stderr %q", bad, err, e)
		}
	}
	if _, e, err := run(t, "influence", "--data", data, "--text", "the l\x01ght", "--position", "4"); err == nil ||
		!strings.Contains(e, "not in the vocabulary") {
		t.Errorf("unknown character: %v, stderr %q", err, e)
	}
}

// Beside a running server the command asks it (POST /v1/influence) and prints the same
// numbers as it does on the directory itself; the API's own answer has them too.
func TestInfluenceBesideServer(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	args := append([]string{"train", "--data", data, "--corpus", corpusFile(t, 20000), "--steps", "20",
		"--checkpoint-every", "5", "--checkpoint-keep-every", "10"}, tinyFlags...)
	if _, e, err := run(t, args...); err != nil {
		t.Fatalf("train: %v: %s", err, e)
	}
	ask := []string{"influence", "--data", data, "--text", "the light of the sun", "--position", "12", "--top-k", "4", "--json"}
	out, e, err := run(t, ask...)
	if err != nil {
		t.Fatalf("influence: %v: %s", err, e)
	}
	var local, remote datadir.InfluenceAnswer
	if err := json.Unmarshal([]byte(out), &local); err != nil {
		t.Fatal(err)
	}
	url, stop := serveBeside(t, data)
	defer stop()
	out, e, err = run(t, ask...)
	if err != nil || !strings.Contains(e, "through its API") {
		t.Fatalf("influence beside the server: %v: %s", err, e)
	}
	if err := json.Unmarshal([]byte(out), &remote); err != nil {
		t.Fatal(err)
	}
	if remote.Seconds <= 0 || remote.Cached {
		t.Errorf("the server's run: %.2fs, cached %v", remote.Seconds, remote.Cached)
	}
	local.Seconds, remote.Seconds = 0, 0
	if !reflect.DeepEqual(local, remote) {
		t.Errorf("through the server:\n%+v\nwithout:\n%+v", remote, local)
	}

	resp, err := http.Post(url+"/v1/influence", "application/json",
		strings.NewReader(`{"text":"the light of the sun","position":12,"top_k":4}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var job api.InfluenceJob
	if err := json.NewDecoder(resp.Body).Decode(&job); err != nil || resp.StatusCode != http.StatusOK || job.Result == nil || !job.Result.Cached {
		t.Fatalf("POST /v1/influence: %d %+v %v", resp.StatusCode, job, err)
	}
	for i, e := range job.Result.Top {
		if l := local.Top[i]; e.Influence != l.Score || e.Step != l.Step || e.Row != l.Row || e.Pos != l.Pos || e.Context != l.Context {
			t.Errorf("API top[%d] = %+v, CLI %+v", i, e, l)
		}
	}
	if job.Result.PredictedDeltaLoss != local.DeltaLossTop || job.Result.Loss != local.Loss {
		t.Errorf("API Δloss %g loss %g, CLI %g %g", job.Result.PredictedDeltaLoss, job.Result.Loss, local.DeltaLossTop, local.Loss)
	}
	if _, e, err := run(t, append(ask, "--step", "10")...); err == nil || !strings.Contains(e, "it serves step 20") {
		t.Errorf("--step 10 beside the server: %v, stderr %q", err, e)
	}
}

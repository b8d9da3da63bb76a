package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/query"
)

// shortModel trains a d=16 model whose schedule (100000 steps) is far from done when --for
// stops it, and returns the directory and the step it reached.
func shortModel(t *testing.T) (string, int) {
	t.Helper()
	data := filepath.Join(t.TempDir(), "d")
	args := append([]string{"train", "--data", data, "--corpus", corpusFile(t, 20000), "--steps", "100000", "--for", "1s"}, tinyFlags...)
	if _, e, err := run(t, args...); err != nil {
		t.Fatalf("train: %v: %s", err, e)
	}
	out, e, err := run(t, "stats", "--data", data, "--json")
	if err != nil {
		t.Fatalf("stats: %v: %s", err, e)
	}
	var st struct{ Step int }
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Step < 1 || st.Step >= 100000 {
		t.Fatalf("stats %s: %v", out, err)
	}
	return data, st.Step
}

// serveBeside runs serve on data at a free loopback port until it serves, and returns its
// URL (from the ServerFile it wrote) and a stop function that ends it with SIGTERM and
// returns its stderr.
func serveBeside(t *testing.T, data string, extra ...string) (url string, stop func() string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--data", data, "--addr", "127.0.0.1:0"}, extra...)...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop = func() string {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("serve: %v: %s", err, stderr.String())
		}
		return stderr.String()
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"serving"`) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("serve never served: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(data, ServerFile))
	if err != nil {
		stop()
		t.Fatalf("serve wrote no %s: %v", ServerFile, err)
	}
	var rec serverRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID != cmd.Process.Pid {
		stop()
		t.Fatalf("%s: %s (serve pid %d): %v", ServerFile, b, cmd.Process.Pid, err)
	}
	return rec.URL, stop
}

// Beside a running server, generate and stats go through its API, verify and a second
// serve say what will work; the server says at start-up that its model is short of its
// schedule, and removes its ServerFile when it stops.
func TestBesideServer(t *testing.T) {
	data, step := shortModel(t)
	url, stop := serveBeside(t, data)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()

	out, stderr, err := run(t, "stats", "--data", data)
	if err != nil || !strings.Contains(out, fmt.Sprintf("steps: %d of 100000, train loss ", step)) ||
		!strings.Contains(stderr, "held by the server at "+url) {
		t.Errorf("stats beside the server: %v\n%s%s", err, out, stderr)
	}
	out, stderr, err = run(t, "stats", "--data", data, "--json")
	var info struct{ Step int }
	if err != nil || json.Unmarshal([]byte(out), &info) != nil || info.Step != step {
		t.Errorf("stats --json beside the server: %v: %s%s", err, out, stderr)
	}
	out, stderr, err = run(t, "generate", "--data", data, "--prompt", "The ", "--tokens", "2", "--layers", "out", "--top-k", "3", "--format", "csv")
	if err != nil {
		t.Fatalf("generate beside the server: %v: %s", err, stderr)
	}
	if recs, err := csv.NewReader(strings.NewReader(out)).ReadAll(); err != nil || len(recs) != 1+2*3 || recs[1][0] != fmt.Sprint(step) {
		t.Errorf("generate --format csv beside the server: %v\n%s", err, out)
	}
	out, stderr, err = run(t, "generate", "--data", data, "--prompt", "The ", "--tokens", "2", "--layers", "out", "--temperature", "0", "--json")
	var ans struct{ Sampling struct{ Method string } }
	if err != nil || json.Unmarshal([]byte(out), &ans) != nil || ans.Sampling.Method != "greedy" {
		t.Errorf("generate --temperature 0 --json beside the server: %v: %.300s%s", err, out, stderr)
	}
	out, stderr, err = run(t, "generate", "--data", data, "--prompt", "The ", "--tokens", "1", "--scan", "pruned", "--json")
	var pruned struct {
		Tokens []struct {
			Layers map[string]struct{ Scan query.LayerScan }
		}
	}
	if err != nil || json.Unmarshal([]byte(out), &pruned) != nil || len(pruned.Tokens) != 1 ||
		pruned.Tokens[0].Layers["out"].Scan.Mode != query.ScanPruned || len(pruned.Tokens[0].Layers["out"].Scan.Omitted) == 0 {
		t.Errorf("generate --scan pruned --json beside the server: %v: %.300s%s", err, out, stderr)
	}
	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"verify", "; verify needs the directory itself (every answer of the server carries its dual_check), or stop it (kill -INT ",
			[]string{"verify", "--data", data}},
		{"serve", "is already served at " + url, []string{"serve", "--data", data, "--addr", "127.0.0.1:0"}},
		{"generate, a bad prompt", `prompt: character not in the vocabulary: "€"`, []string{"generate", "--data", data, "--prompt", "€"}},
		{"generate --plot", "--plot needs the directory itself", []string{"generate", "--data", data, "--prompt", "a", "--plot", filepath.Join(t.TempDir(), "p.png")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := run(t, tc.args...)
			last := stderr[strings.LastIndex(strings.TrimSuffix(stderr, "\n"), "\n")+1:]
			if err == nil || !strings.Contains(last, tc.want) || !strings.HasPrefix(last, "spotlight: ") {
				t.Errorf("err %v, stderr %q, want a last line containing %q", err, stderr, tc.want)
			}
		})
	}

	log := stop()
	stopped = true
	if want := fmt.Sprintf("serving a model short of its schedule: trained %d of 100000 steps; serve --continue-training trains the rest while serving", step); !strings.Contains(log, want) {
		t.Errorf("serve's log lacks %q:\n%s", want, log)
	}
	if _, err := os.Stat(filepath.Join(data, ServerFile)); !os.IsNotExist(err) {
		t.Errorf("%s left after a clean exit: %v", ServerFile, err)
	}

	// --continue-training starts the rest of the schedule as POST /v1/train would.
	url, stop = serveBeside(t, data, "--continue-training")
	resp, err := http.Get(url + "/v1/train")
	if err != nil {
		stop()
		t.Fatal(err)
	}
	var st struct {
		Running bool
		Until   int
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	log = stop()
	if err != nil || !st.Running || st.Until != 100000 {
		t.Errorf("GET /v1/train after --continue-training: %+v, %v", st, err)
	}
	if !regexp.MustCompile(fmt.Sprintf(`continuing training in the background: steps %d to 100000`, step+1)).MatchString(log) {
		t.Errorf("serve --continue-training's log:\n%s", log)
	}
}

// A directory held by a process that is no server gets one line that says so; a
// ServerFile whose process is gone or that does not answer is ignored.
func TestLockedWithoutServer(t *testing.T) {
	data := mustTrain(t, 2)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string]serverRecord{
		"process gone":  {URL: "http://127.0.0.1:1", PID: gone.Process.Pid},
		"not answering": {URL: "http://127.0.0.1:1", PID: os.Getpid()},
	} {
		b, _ := json.Marshal(rec)
		if err := os.WriteFile(filepath.Join(data, ServerFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if s := findServer(data, ""); s != nil {
			t.Errorf("%s: found %+v", name, s.serverRecord)
		}
	}
	dir, err := datadir.Open(data, false) // holds the directory's lock, as a train does
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for _, args := range [][]string{{"stats", "--data", data}, {"verify", "--data", data}, {"generate", "--data", data, "--prompt", "a"}} {
		_, stderr, err := run(t, args...)
		want := data + " is in use by another process (a train, or a serve that is still training); wait for it to finish or stop it"
		if err == nil || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: err %v, stderr %q", args[0], err, stderr)
		}
	}
}

// On a terminal the step is the bar's count alone (a step in its description was drawn a
// frame apart from the count: "step 6 … (5/2000)").
func TestProgressBarCount(t *testing.T) {
	var b bytes.Buffer
	p := newProgressOn(&b, true, nil, "training", 2000)
	p.Set(5, stepAttrs("2.100", "-", 100)...)
	time.Sleep(250 * time.Millisecond) // past the bar's redraw throttle
	p.Set(6, stepAttrs("2.000", "-", 100)...)
	frames := strings.Split(b.String(), "\r")
	last := frames[len(frames)-1]
	if !strings.HasPrefix(last, "training train_loss ") || !strings.Contains(last, "(6/2000") ||
		strings.Contains(b.String(), "step") {
		t.Errorf("frames %q", b.String())
	}
}

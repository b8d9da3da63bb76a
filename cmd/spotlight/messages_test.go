package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spotlight-lm/spotlight/lm"
)

// mustTrain trains a d=16 model for steps steps into a new directory.
func mustTrain(t *testing.T, steps int) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "d")
	args := append([]string{"train", "--data", data, "--corpus", corpusFile(t, 20000), "--steps", fmt.Sprint(steps)}, tinyFlags...)
	if _, e, err := run(t, args...); err != nil {
		t.Fatalf("train: %v: %s", err, e)
	}
	return data
}

// Each mistake gets one line on stderr that says what to do.
func TestMessages(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	model, corpus := mustTrain(t, 3), corpusFile(t, 20000)
	isFile := "--data " + file + " is a file, not a directory"
	cases := []struct {
		name, want string
		args       []string
	}{
		{"unknown command", `spotlight: unknown command "trian"; did you mean "train"?`, []string{"trian"}},
		{"unknown bench command", `unknown command "tran"; did you mean "train"?`, []string{"bench", "tran"}},
		{"unknown command, no suggestion", `unknown command "zzz" (see spotlight --help)`, []string{"zzz"}},
		{"train on a file", isFile, []string{"train", "--data", file}},
		{"stats on a file", isFile, []string{"stats", "--data", file}},
		{"verify on a file", isFile, []string{"verify", "--data", file}},
		{"generate on a file", isFile, []string{"generate", "--data", file, "--prompt", "a"}},
		{"serve on a file", isFile, []string{"serve", "--data", file, "--addr", "127.0.0.1:0"}},
		{"eval on a file", isFile, []string{"eval", "--data", file}},
		{"train over a model", "to continue it: spotlight train --data " + model + " --resume",
			append([]string{"train", "--data", model, "--corpus", corpus, "--steps", "3"}, tinyFlags...)},
		{"built-in corpus in another case", `did you mean the built-in corpus "opticks"?`,
			[]string{"train", "--data", filepath.Join(tmp, "new"), "--corpus", "Opticks"}},
		{"resume with --lr", "--lr cannot change on --resume: the recorded dual form assumes one optimizer setting",
			[]string{"train", "--data", model, "--resume", "--lr", "0.1"}},
		{"resume with --d", "--d cannot change on --resume: the model's shape is fixed",
			[]string{"train", "--data", model, "--resume", "--d", "32"}},
		{"resume with --corpus", "--corpus cannot change on --resume",
			[]string{"train", "--data", model, "--resume", "--corpus", corpus}},
		{"resume with --checkpoint-every 0", "--checkpoint-every must be positive",
			[]string{"train", "--data", model, "--resume", "--checkpoint-every", "0"}},
		{"generate with an unknown --format", `--format "xml": want one of text, json, jsonl, csv`,
			[]string{"generate", "--data", model, "--prompt", "a", "--format", "xml"}},
		{"generate with --json and --format csv", "--json and --format csv disagree: give one",
			[]string{"generate", "--data", model, "--prompt", "a", "--json", "--format", "csv"}},
		{"generate with an unknown --scan", `scan: unknown scan mode "fast" (known: full, pruned)`,
			[]string{"generate", "--data", model, "--prompt", "a", "--scan", "fast"}},
		{"serve with a bad --addr", "--addr nonsense: address nonsense: missing port",
			[]string{"serve", "--data", filepath.Join(tmp, "s"), "--addr", "nonsense"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := run(t, tc.args...)
			if err == nil {
				t.Fatal("succeeded")
			}
			if !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr %q, want one line containing %q", stderr, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(tmp, "s")); !os.IsNotExist(err) {
		t.Errorf("serve with a bad --addr wrote its data directory")
	}
}

// serve reports a busy port at once, before training anything.
func TestServeBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := filepath.Join(t.TempDir(), "d")
	start := time.Now()
	_, stderr, err := run(t, "serve", "--data", data, "--addr", ln.Addr().String())
	if err == nil || !strings.Contains(stderr, "address already in use") {
		t.Fatalf("err %v, stderr %q", err, stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v: it trained before binding", d)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("data directory was written")
	}
}

// Off a terminal, long jobs write log lines, not progress-bar frames; --resume honours
// --steps and --checkpoint-every.
func TestProgressOffTerminal(t *testing.T) {
	data, corpus := filepath.Join(t.TempDir(), "d"), corpusFile(t, 20000)
	_, stderr, err := run(t, append([]string{"train", "--data", data, "--corpus", corpus, "--steps", "20", "--checkpoint-every", "10"}, tinyFlags...)...)
	if err != nil {
		t.Fatalf("train: %v: %s", err, stderr)
	}
	for _, want := range []string{"msg=training from=0 to=20", "msg=checkpoint step=10 train_loss=", "msg=checkpoint step=20 ", "held_out_loss=",
		"trained to step 20: train loss ", "(last step's batch), held-out loss ", " (4 windows of 16 characters); data in "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("train stderr lacks %q:\n%s", want, stderr)
		}
	}
	_, stderr, err = run(t, "train", "--data", data, "--resume", "--steps", "26", "--checkpoint-every", "3")
	if err != nil {
		t.Fatalf("resume: %v: %s", err, stderr)
	}
	for _, want := range []string{"msg=training from=20 to=26", "msg=checkpoint step=21 ", "msg=checkpoint step=24 ", "trained to step 26"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("resume stderr lacks %q:\n%s", want, stderr)
		}
	}
	// Without its segment files, a read-only generate reads the memory onto the heap, layer
	// by layer: the one long job it has.
	if err := os.RemoveAll(filepath.Join(data, "segments")); err != nil {
		t.Fatal(err)
	}
	_, gen, err := run(t, "generate", "--data", data, "--prompt", "the ", "--tokens", "2")
	if err != nil {
		t.Fatalf("generate: %v: %s", err, gen)
	}
	if !strings.Contains(gen, `msg="loading out"`) {
		t.Errorf("generate stderr lacks the loading line:\n%s", gen)
	}
	for name, s := range map[string]string{"train": stderr, "generate": gen} {
		if strings.Contains(s, "\r") {
			t.Errorf("%s wrote carriage-return frames off a terminal: %q", name, s)
		}
	}
}

// Without torch, bench says so in one line and still prints its own rows.
func TestBenchWithoutTorch(t *testing.T) {
	out, stderr, err := run(t, "bench", "train", "--preset", "tiny", "--steps", "1", "--warmup", "0", "--python", "no-such-python")
	if err != nil {
		t.Fatalf("bench: %v: %s", err, stderr)
	}
	if n := strings.Count(stderr, "pytorch reference skipped: no Python interpreter \"no-such-python\""); n != 1 {
		t.Errorf("stderr has the skip line %d times:\n%s", n, stderr)
	}
	for _, row := range []string{"vocab 91", "\nno-capture ", "\ncapture ", "\ncapture-discard ", "capture overhead"} {
		if !strings.Contains(out, row) {
			t.Errorf("stdout lacks %q:\n%s", row, out)
		}
	}
}

// With torch importable, the built-in reference runs with the model's vocabulary.
func TestBenchWithTorch(t *testing.T) {
	python := ""
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) { // the first python3 on PATH may lack torch
		p := filepath.Join(dir, "python3")
		if exec.Command(p, "-c", "import torch").Run() == nil {
			python = p
			break
		}
	}
	if python == "" {
		t.Skip("no python3 on PATH can import torch")
	}
	out, stderr, err := run(t, "bench", "train", "--preset", "tiny", "--steps", "2", "--warmup", "1", "--python", python, "--json")
	if err != nil {
		t.Fatalf("bench: %v: %s", err, stderr)
	}
	var doc struct {
		Vocab     int     `json:"vocab"`
		VsPyTorch float64 `json:"vs_pytorch"`
		PyTorch   struct {
			Params int `json:"params"`
		} `json:"pytorch"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	// The reference's parameter count depends on the vocabulary it was given: embedding and
	// output V·d + d·V + V, positions T·d, per block 12d² + 13d, final LayerNorm 2d.
	c, v := lm.Presets["tiny"], doc.Vocab
	want := 2*v*c.D + v + c.Ctx*c.D + c.Blocks*(12*c.D*c.D+13*c.D) + 2*c.D
	if doc.Vocab != 91 || doc.VsPyTorch <= 0 || doc.PyTorch.Params != want {
		t.Errorf("vocab %d, ratio %g, pytorch params %d (want %d)", doc.Vocab, doc.VsPyTorch, doc.PyTorch.Params, want)
	}
}

// Every command has examples, and train's help lists each hyperparameter for every preset.
func TestHelp(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Example == "" && c.Name() != "help" && c.Name() != "completion" {
			t.Errorf("%s has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"train", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	for _, h := range hypers {
		var row string
		for _, l := range lines {
			if strings.HasPrefix(l, "  --"+h.name+" ") {
				row = l
				break
			}
		}
		got := strings.Fields(row)
		want := []string{"--" + h.name, fmt.Sprint(fieldValue(h.field(ptr(lm.Presets["small"])))), fmt.Sprint(fieldValue(h.field(ptr(lm.Presets["tiny"]))))}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("train --help row %q, want %q", row, want)
		}
	}
	if !strings.Contains(out.String(), "Examples:") {
		t.Error("train --help shows no examples")
	}
}

func ptr(c lm.Config) *lm.Config { return &c }

// A flag the user set overrides the preset; the others keep the preset's value.
func TestConfigFlags(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		preset string
		want   func(*lm.Config)
	}{
		{"none", nil, "tiny", func(*lm.Config) {}},
		{"ints and floats", []string{"--d", "32", "--lr", "0.05", "--seed", "7"}, "small", func(c *lm.Config) { c.D, c.LR, c.Seed = 32, 0.05, 7 }},
		{"zero is a value", []string{"--clip", "0"}, "tiny", func(c *lm.Config) { c.Clip = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			f := bindConfig(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := f.config(tc.preset)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := lm.Preset(tc.preset)
			tc.want(&want)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

// serve's first training run takes --preset, --corpus and the hyperparameter flags; on a
// directory that holds a model they are ignored with a warning.
func TestServeFirstRun(t *testing.T) {
	data, corpus := filepath.Join(t.TempDir(), "d"), corpusFile(t, 20000)
	args := append([]string{"serve", "--data", data, "--addr", "127.0.0.1:0", "--preset", "small", "--corpus", corpus, "--steps", "4"}, tinyFlags...)
	serveUntilReady(t, args, "")
	out, stderr, err := run(t, "stats", "--data", data, "--json")
	if err != nil {
		t.Fatalf("stats: %v: %s", err, stderr)
	}
	var st struct {
		Step   int `json:"step"`
		Config struct {
			Preset string `json:"preset"`
			Blocks int    `json:"blocks"`
			D      int    `json:"d"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Step != 4 || st.Config.Preset != "small" || st.Config.Blocks != lm.Presets["small"].Blocks || st.Config.D != 16 {
		t.Errorf("first run: %+v", st)
	}
	serveUntilReady(t, []string{"serve", "--data", data, "--addr", "127.0.0.1:0", "--preset", "tiny"}, `"msg":"--preset ignored: the data directory already holds a model"`)
}

// serveUntilReady runs serve until it logs that it is serving (and, if want is set, that its
// stderr holds want), then stops it with SIGTERM.
func serveUntilReady(t *testing.T, args []string, want string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
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
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve: %v: %s", err, stderr.String())
	}
	if want != "" && !strings.Contains(stderr.String(), want) {
		t.Errorf("serve stderr lacks %s:\n%s", want, stderr.String())
	}
}

// lockedBuffer is a bytes.Buffer that a running process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Repeated comparisons report each repetition's overhead and their median; the rows are
// over all of them.
func TestBenchReps(t *testing.T) {
	out, stderr, err := run(t, "bench", "train", "--preset", "tiny", "--steps", "2", "--round", "1", "--warmup", "0", "--reps", "3", "--torch", "off", "--json")
	if err != nil {
		t.Fatalf("bench: %v: %s", err, stderr)
	}
	var doc trainBench
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.CaptureOverheads) != 3 {
		t.Fatalf("%d overheads, want 3: %s", len(doc.CaptureOverheads), out)
	}
	if m := slices.Sorted(slices.Values(doc.CaptureOverheads))[1]; doc.CaptureOverhead != m {
		t.Errorf("overhead %g, want the median %g of %v", doc.CaptureOverhead, m, doc.CaptureOverheads)
	}
	for _, r := range doc.Results {
		if r.Steps != 6 || r.MsPerStep <= 0 || r.TokensPerSec <= 0 {
			t.Errorf("%s: %d steps, %g ms/step, %g tokens/s; want 6 steps over the repetitions", r.Name, r.Steps, r.MsPerStep, r.TokensPerSec)
		}
		if perStep := r.TokensPerSec * r.MsPerStep / 1000; math.Abs(perStep-float64(lm.Presets["tiny"].Batch*lm.Presets["tiny"].Ctx)) > 1e-6*perStep {
			t.Errorf("%s: %g tokens a step", r.Name, perStep)
		}
	}
	if _, stderr, err := run(t, "bench", "train", "--preset", "tiny", "--reps", "0", "--torch", "off"); err == nil || !strings.Contains(stderr, "--reps") {
		t.Errorf("--reps 0: err %v, stderr %q", err, stderr)
	}
}

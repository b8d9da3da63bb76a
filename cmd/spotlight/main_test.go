package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotlight-lm/spotlight/corpora"
)

// binary is the spotlight command built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spotlight-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "spotlight")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tinyFlags make a model small enough for tests (d=16).
var tinyFlags = []string{"--d", "16", "--heads", "2", "--ctx", "16", "--batch", "4", "--warmup", "5"}

// corpusFile writes the first n bytes of the embedded corpus to a file.
func corpusFile(t *testing.T, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "corpus.txt")
	if err := os.WriteFile(p, corpora.Default()[:n], 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

type verifyDoc struct {
	OK     bool `json:"ok"`
	Step   int  `json:"step"`
	Layers []struct {
		Name      string  `json:"name"`
		MaxRelErr float64 `json:"max_rel_err"`
		Entries   int     `json:"entries"`
	} `json:"layers"`
}

func verify(t *testing.T, data string) verifyDoc {
	t.Helper()
	out, stderr, err := run(t, "verify", "--data", data, "--json", "--samples", "4")
	if err != nil {
		t.Fatalf("verify: %v: %s", err, stderr)
	}
	var doc verifyDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("verify --json printed %q: %v", out, err)
	}
	return doc
}

// A run killed with SIGKILL mid-training resumes from its last checkpoint, and the memory
// still reproduces every layer: no step lost, none duplicated.
func TestKillAndResume(t *testing.T) {
	data, corpus := filepath.Join(t.TempDir(), "d"), corpusFile(t, 30000)
	args := append([]string{"train", "--data", data, "--corpus", corpus, "--steps", "400", "--checkpoint-every", "7",
		"--momentum", "0.9", "--weight-decay", "1e-4", "--clip", "1.0"}, tinyFlags...)
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once it is well past a checkpoint but not done. Its stderr is a pipe, so it
	// logs a line at every checkpoint.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var step int
		if i := strings.Index(sc.Text(), "msg=checkpoint step="); i >= 0 {
			_, _ = fmt.Sscanf(sc.Text()[i:], "msg=checkpoint step=%d", &step)
		}
		if step >= 40 {
			break
		}
	}
	time.Sleep(50 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	if _, e, err := run(t, "train", "--data", data, "--resume"); err != nil {
		t.Fatalf("resume: %v: %s", err, e)
	}
	doc := verify(t, data)
	if !doc.OK || doc.Step != 400 {
		t.Fatalf("after resume: ok=%v step=%d", doc.OK, doc.Step)
	}
	for _, l := range doc.Layers {
		if l.Entries != 400*4*16 {
			t.Errorf("%s: %d entries, want %d", l.Name, l.Entries, 400*4*16)
		}
		if l.MaxRelErr > 1e-5 {
			t.Errorf("%s: max rel err %.3g", l.Name, l.MaxRelErr)
		}
	}
}

// Every bad input gets a one-line error and writes nothing.
func TestTrainBadInput(t *testing.T) {
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := corpusFile(t, 20000)
	foreign := filepath.Join(tmp, "foreign")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	write("foreign/notes.txt", []byte("mine"))
	cases := []struct {
		name, want string
		args       []string
	}{
		{"missing corpus", "does not exist", []string{"--corpus", filepath.Join(tmp, "nope.txt")}},
		{"empty corpus", "empty", []string{"--corpus", write("empty.txt", nil)}},
		{"binary corpus", "binary", []string{"--corpus", write("bin.txt", []byte("ab\x00cd\x00ef"))}},
		{"non-UTF-8 corpus", "UTF-8", []string{"--corpus", write("latin1.txt", []byte("caf\xe9 au lait, s'il vous pla\xeet"))}},
		{"corpus shorter than context", "too short", []string{"--corpus", write("short.txt", []byte("just a few words here"))}},
		{"unknown preset", "unknown preset", []string{"--corpus", good, "--preset", "huge"}},
		{"unknown layer", "unknown layer", []string{"--corpus", good, "--layers", "out,block9.ff1"}},
		{"bad precision", "precision", []string{"--corpus", good, "--precision", "f8"}},
		{"negative momentum", "momentum", []string{"--corpus", good, "--momentum", "-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "d")
			_, stderr, err := run(t, append(append([]string{"train", "--data", data, "--steps", "3"}, tc.args...), tinyFlags...)...)
			if err == nil {
				t.Fatal("train succeeded")
			}
			if !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr %q, want one line containing %q", stderr, tc.want)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("data directory was written")
			}
		})
	}
	t.Run("foreign directory", func(t *testing.T) {
		_, stderr, err := run(t, append([]string{"train", "--data", foreign, "--corpus", good, "--steps", "3"}, tinyFlags...)...)
		if err == nil || !strings.Contains(stderr, "not a Spotlight data directory") {
			t.Fatalf("err %v, stderr %q", err, stderr)
		}
		entries, _ := os.ReadDir(foreign)
		if len(entries) != 1 {
			t.Errorf("foreign directory now holds %d entries", len(entries))
		}
	})
	t.Run("verify on foreign directory", func(t *testing.T) {
		_, stderr, err := run(t, "verify", "--data", foreign)
		if err == nil || !strings.Contains(stderr, "not a Spotlight data directory") {
			t.Fatalf("err %v, stderr %q", err, stderr)
		}
	})
}

// A second writer on the same directory is refused while the first is training.
func TestSecondWriter(t *testing.T) {
	data, corpus := filepath.Join(t.TempDir(), "d"), corpusFile(t, 20000)
	if _, e, err := run(t, append([]string{"train", "--data", data, "--corpus", corpus, "--steps", "5"}, tinyFlags...)...); err != nil {
		t.Fatalf("train: %v: %s", err, e)
	}
	first := exec.Command(binary, "train", "--data", data, "--resume", "--steps", "100000")
	stderr, err := first.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Process.Kill(); _ = first.Wait() }()
	// Once the first writer logs its start, it holds the directory.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "msg=training") {
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	_, e, err := run(t, "train", "--data", data, "--resume", "--steps", "6")
	if err == nil || !strings.Contains(e, "in use") {
		t.Fatalf("second writer: err %v, stderr %q", err, e)
	}
}

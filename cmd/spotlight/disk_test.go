package main

import (
	"net/http"
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

// asNobody runs cmd as an unprivileged user, for whom permission bits count (root ignores
// them), or skips the test.
func asNobody(t *testing.T, cmd *exec.Cmd, paths ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the server as another user")
	}
	for _, p := range append(paths, filepath.Dir(binary)) {
		for d := p; d != "/"; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() && fi.Mode().Perm()&0o005 != 0o005 {
				if err := os.Chmod(d, fi.Mode().Perm()|0o005); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
}

// startServe starts serve on data as nobody and returns its address and its stderr so far.
func startServe(t *testing.T, data string) (*exec.Cmd, string, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command(binary, "serve", "--data", data, "--addr", "127.0.0.1:0")
	asNobody(t, cmd, data)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, rest, ok := strings.Cut(stderr.String(), `"addr":"http://`); ok {
			addr, _, _ := strings.Cut(rest, `"`)
			return cmd, addr, &stderr
		}
	}
	t.Fatalf("serve did not start: %s", stderr.String())
	return nil, "", nil
}

// A data directory that stops being writable while the server trains: SIGTERM still ends
// the server within 10 s, with a non-zero exit and the reason. One that is read-only from
// the start is served read-only, and the log says so.
func TestReadOnlyDataDir(t *testing.T) {
	corpus := corpusFile(t, 20000)
	tmp := t.TempDir()
	data, ro := filepath.Join(tmp, "d"), filepath.Join(tmp, "ro")
	for _, d := range []string{data, ro} {
		if _, e, err := run(t, append([]string{"train", "--data", d, "--corpus", corpus, "--steps", "3"}, tinyFlags...)...); err != nil {
			t.Fatalf("train: %v: %s", err, e)
		}
		if out, err := exec.Command("chown", "-R", "65534:65534", d).CombinedOutput(); err != nil {
			t.Skipf("chown: %v %s", err, out)
		}
	}
	cmd, addr, stderr := startServe(t, data)
	resp, err := http.Post("http://"+addr+"/v1/train", "application/json", strings.NewReader(`{"steps":100000}`))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/train: %v %v", resp, err)
	}
	resp.Body.Close()
	time.Sleep(300 * time.Millisecond)
	if err := os.Chmod(filepath.Join(data, "db"), 0o555); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	t.Logf("exit %v after %v: %s", err, time.Since(start).Round(time.Millisecond), tail(stderr.String()))
	if err == nil || !strings.Contains(stderr.String(), "spotlight: ") {
		t.Fatalf("exit %v, stderr tail %q", err, tail(stderr.String()))
	}

	if err := os.Chmod(filepath.Join(ro, "db"), 0o555); err != nil {
		t.Fatal(err)
	}
	cmd, addr, stderr = startServe(t, ro)
	resp, err = http.Get("http://" + addr + "/v1/model")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/model on a read-only dir: %v %v", resp, err)
	}
	resp.Body.Close()
	if !strings.Contains(stderr.String(), "serving read-only") || !strings.Contains(stderr.String(), "not writable") {
		t.Fatalf("no word of serving read-only: %q", tail(stderr.String()))
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("read-only serve exit: %v: %q", err, tail(stderr.String()))
	}
}

func tail(s string) string { return s[max(0, len(s)-600):] }

// Bytes changed inside a segment file (which answers read, and opening does not check past
// the last step) fail verify with the layer and step; --repair writes the files again from
// the database and verify passes.
func TestVerifyFindsDamagedSegments(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	if _, e, err := run(t, append([]string{"train", "--data", data, "--corpus", corpusFile(t, 20000), "--steps", "6"}, tinyFlags...)...); err != nil {
		t.Fatalf("train: %v: %s", err, e)
	}
	path := filepath.Join(data, "segments", "out.keys")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, e, err := run(t, "verify", "--data", data)
	if err == nil || !strings.Contains(e, `layer "out": step `) || !strings.Contains(e, "--repair") {
		t.Fatalf("verify on a damaged segment: %v: %s", err, e)
	}
	if _, e, err := run(t, "verify", "--data", data, "--repair"); err != nil {
		t.Fatalf("verify --repair: %v: %s", err, e)
	}
	if doc := verify(t, data); !doc.OK || doc.Step != 6 {
		t.Fatalf("after the repair: ok=%v step=%d", doc.OK, doc.Step)
	}
}

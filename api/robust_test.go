package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotlight-lm/spotlight/api"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
)

// logBuffer collects a server's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines whose msg starts with prefix, decoded.
func (b *logBuffer) lines(prefix string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && strings.HasPrefix(fmt.Sprint(m["msg"]), prefix) {
			out = append(out, m)
		}
	}
	return out
}

// serveLogged is MustServe with the server's log kept; the caller shuts the server down.
func serveLogged(tb testing.TB, dir *datadir.Dir, opts api.Options) (*testServer, *logBuffer) {
	tb.Helper()
	logs := &logBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	s, err := api.New(dir, opts)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(s.Close)
	return &testServer{Server: s, base: "http://" + ln.Addr().String()}, logs
}

// slowReader sends one POST on a raw connection and never reads the answer.
func slowReader(tb testing.TB, s *testServer, path, body string) net.Conn {
	tb.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
	return conn
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, limit time.Duration, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("still waiting after %v for %s", limit, what)
		}
	}
}

// bigAnswer is a request of a few seconds whose answer (about 20 MB) is far more than the
// loopback socket buffers hold.
const bigAnswer = `{"prompt":"The light","tokens":96,"top_k":1000,"passages":50}`

// Clients that never read their large answers hold their connections, not the query pool:
// small queries keep answering 200 while they hang, and the log records each unfinished
// write with the bytes it got through.
func TestSlowReaders(t *testing.T) {
	s, logs := serveLogged(t, sharedDir(t), api.Options{MaxQueries: 4, WriteTimeout: 20 * time.Second})
	start := time.Now()
	for range 4 {
		slowReader(t, s, "/v1/generate", bigAnswer)
	}
	waitFor(t, "4 answers computed and being written", 15*time.Second, func() bool {
		return s.QueriesRunning() == 0 && s.InFlight() == 4
	})
	computed := time.Since(start)
	counts := map[int]int{}
	for range 20 {
		r := s.call(t, "POST", "/v1/generate", `{"prompt":"The","tokens":2,"top_k":2}`)
		counts[r.Status]++
	}
	if counts[200] != 20 {
		t.Fatalf("while 4 slow readers hang: statuses %v", counts)
	}
	// The last small request may still be leaving the server's middleware.
	waitFor(t, "the small requests to leave", 5*time.Second, func() bool { return s.InFlight() == 4 })
	waitFor(t, "the slow readers' write timeout", 30*time.Second, func() bool {
		return len(logs.lines("request: response not fully written")) == 4
	})
	for _, l := range logs.lines("request: response not fully written") {
		var written, total int
		if _, err := fmt.Sscanf(fmt.Sprint(l["err"]), "wrote %d of %d bytes", &written, &total); err != nil ||
			l["status"] != 200.0 || written >= total || total < 8<<20 || l["bytes"] != float64(written) {
			t.Fatalf("log line %v", l)
		}
	}
	t.Logf("4 slow readers computed in %v; 20 small queries meanwhile: %v", computed, counts)
}

// longQuery is an attribute request of several seconds on the shared model.
var longQuery = `{"text":` + quote(string(corpora.Default()[:150])) + `,"top_k":1000,"passages":50}`

// A request whose answer would be over the limit is refused before any work, with the
// limit and the estimate; one that is allowed is cut at the query timeout, within a second.
func TestAnswerBudget(t *testing.T) {
	s := sharedServer(t)
	t.Run("ErrTooLarge", func(t *testing.T) {
		release := s.FillQueryPool() // refused before it would take a slot
		defer release()
		start := time.Now()
		r := s.call(t, "POST", "/v1/generate", `{"prompt":"The light","tokens":1024,"top_k":1000,"bins":1000}`)
		code, msg := r.errorCode(t)
		if r.Status != 422 || code != api.CodeAnswerTooLarge || !strings.Contains(msg, "over the limit of 64.0 MiB") ||
			!strings.Contains(msg, "would be about") || time.Since(start) > time.Second {
			t.Fatalf("got %d %s after %v", r.Status, r.Body, time.Since(start))
		}
	})
	t.Run("ErrTooLargeAttribute", func(t *testing.T) {
		small := MustServe(t, sharedDir(t), api.Options{MaxAnswerBytes: 1 << 20})
		r := small.call(t, "POST", "/v1/attribute", `{"text":"`+strings.Repeat("The light ", 20)+`","top_k":1000}`)
		if code, msg := r.errorCode(t); r.Status != 422 || code != api.CodeAnswerTooLarge || !strings.Contains(msg, "1.0 MiB") {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
		if r := small.call(t, "POST", "/v1/attribute", `{"text":"The light"}`); r.Status != 200 {
			t.Fatalf("a small answer: %d %s", r.Status, r.Body)
		}
	})
	t.Run("ErrTimeout", func(t *testing.T) {
		quick := MustServe(t, sharedDir(t), api.Options{QueryTimeout: 300 * time.Millisecond})
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				start := time.Now()
				r := quick.call(t, "POST", "/v1/attribute", longQuery)
				if code, _ := r.errorCode(t); r.Status != 503 || code != api.CodeTimeout || time.Since(start) > 1300*time.Millisecond {
					t.Errorf("got %d %s after %v", r.Status, r.Body, time.Since(start))
				}
			})
		}
		wg.Wait()
	})
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Shutdown answers the requests it cancels at its deadline with 503 shutting_down and
// says so; with nothing running it is clean.
func TestShutdownCancels(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		s, _ := serveLogged(t, sharedDir(t), api.Options{})
		if r := s.call(t, "GET", "/healthz", ""); r.Status != 200 {
			t.Fatalf("got %d", r.Status)
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrStillRunning", func(t *testing.T) {
		s, _ := serveLogged(t, sharedDir(t), api.Options{})
		got := make(chan response, 1)
		go func() {
			got <- s.call(t, "POST", "/v1/attribute", longQuery)
		}()
		waitFor(t, "the query to start", 5*time.Second, func() bool { return s.QueriesRunning() == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := s.Shutdown(ctx)
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "1 requests still running") || strings.Contains(err.Error(), "closed") || took > 2*time.Second {
			t.Fatalf("shutdown: %v after %v", err, took)
		}
		r := <-got
		if code, _ := r.errorCode(t); r.Status != 503 || code != api.CodeShuttingDown {
			t.Fatalf("the running query got %d %s", r.Status, r.Body)
		}
	})
}

// Bytes changed in the middle of a layer's segment file are found by the server's check
// after start-up: that layer is refused with a clear error naming it and the step, and the
// other layers still answer.
func TestDamagedLayerRefused(t *testing.T) {
	dir := MustTrainDir(t, 12)
	path := filepath.Join(dir.Store.Dir(), "segments", "block0.ff1.keys")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x08
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s := MustServe(t, dir, api.Options{})
	var r response
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if r = s.call(t, "POST", "/v1/attribute", `{"text":"The light"}`); r.Status != http.StatusOK {
			break
		}
	}
	code, msg := r.errorCode(t)
	if r.Status != http.StatusInternalServerError || code != "memory_damaged" || !strings.Contains(msg, `layer "block0.ff1"`) ||
		!strings.Contains(msg, "step ") || !strings.Contains(msg, "verify --repair") {
		t.Fatalf("all layers: %d %s %q", r.Status, code, msg)
	}
	if r := s.call(t, "POST", "/v1/attribute", `{"text":"The light","layers":["out","block0.ff2"]}`); r.Status != http.StatusOK {
		t.Fatalf("the other layers: %d %s", r.Status, r.Body)
	}
}

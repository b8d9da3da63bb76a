package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/spotlight-lm/spotlight/api"
	"github.com/spotlight-lm/spotlight/api/web"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/internal/filemem"
	"github.com/spotlight-lm/spotlight/lm"
)

// tinyConfig is a model small enough to train in a test: d=16, context 16, batch 4.
func tinyConfig(steps int) lm.Config {
	c, _ := lm.Preset("tiny")
	c.D, c.Heads, c.Ctx, c.Batch, c.Steps, c.Warmup, c.CheckpointEvery = 16, 2, 16, 4, steps, 3, 10
	c.LR, c.WeightDecay = 0.2, 1e-3
	return c
}

// MustTrainDir trains a tiny model for `steps` steps in a fresh directory.
func MustTrainDir(tb testing.TB, steps int) *datadir.Dir {
	tb.Helper()
	dir, tr, err := datadir.Create(filepath.Join(tb.TempDir(), "data"), tinyConfig(steps), corpora.Default()[:20000])
	if err != nil {
		tb.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Train(context.Background(), dir.Store, steps, nil); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dir.Close() })
	return dir
}

// testServer is a Server on a real loopback port.
type testServer struct {
	*api.Server
	base string
}

// MustServe starts a Server over dir on 127.0.0.1:0 and shuts it down at cleanup.
func MustServe(tb testing.TB, dir *datadir.Dir, opts api.Options) *testServer {
	tb.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := api.New(dir, opts)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return &testServer{Server: s, base: "http://" + ln.Addr().String()}
}

var shared struct {
	once sync.Once
	dir  *datadir.Dir
	srv  *testServer
}

// sharedServer is one tiny model (20 steps) served for the read-only tests.
func sharedServer(t testing.TB) *testServer {
	shared.once.Do(func() {
		shared.dir = mustTrainShared(t, 20)
		shared.srv = mustServeShared(t, shared.dir)
	})
	if shared.srv == nil {
		t.Fatal("shared server failed to start")
	}
	return shared.srv
}

func mustTrainShared(t testing.TB, steps int) *datadir.Dir {
	dir, tr, err := datadir.Create(filepath.Join(os.TempDir(), fmt.Sprintf("spotlight-api-test-%d", time.Now().UnixNano())), tinyConfig(steps), corpora.Default()[:20000])
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Train(context.Background(), dir.Store, steps, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustServeShared(t testing.TB, dir *datadir.Dir) *testServer {
	s, err := api.New(dir, api.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Web: web.Handler()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	return &testServer{Server: s, base: "http://" + ln.Addr().String()}
}

func TestMain(m *testing.M) {
	filemem.MinMapped = 1 // snapshots swap and close with their indexes in files, as in a large memory
	code := m.Run()
	if shared.srv != nil {
		_ = shared.srv.Shutdown(context.Background())
		path := shared.dir.Store.Dir()
		shared.dir.Close()
		os.RemoveAll(path)
	}
	os.Exit(code)
}

// response is one HTTP exchange as the tests see it.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// errorCode returns the error.code of a JSON error body.
func (r response) errorCode(tb testing.TB) (code, message string) {
	tb.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error.Code == "" {
		tb.Fatalf("status %d: not a JSON error: %q", r.Status, r.Body)
	}
	return e.Error.Code, e.Error.Message
}

// call sends one request and checks the response against the OpenAPI document.
func (s *testServer) call(tb testing.TB, method, path, body string, header ...string) response {
	tb.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	r := response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	checkSchema(tb, method, path, r)
	return r
}

func decode[T any](tb testing.TB, r response) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		tb.Fatalf("status %d: %v: %q", r.Status, err, r.Body)
	}
	return v
}

// The OpenAPI document, compiled once. The compiler is not safe for concurrent use (tests
// call the server from several goroutines), so mu guards it and the schemas it compiled.
var openapi struct {
	once    sync.Once
	doc     map[string]any
	c       *jsonschema.Compiler
	err     error
	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema
}

var recorded atomic.Int64

// route is the OpenAPI path template of a request path.
func route(path string) string {
	path, _, _ = strings.Cut(path, "?")
	path = regexp.MustCompile(`^/v1/(counterfactual|influence)/[^/]+$`).ReplaceAllString(path, "/v1/$1/{id}")
	return regexp.MustCompile(`^/v1/steps/[^/]+$`).ReplaceAllString(path, "/v1/steps/{step}")
}

// checkSchema validates a response against the document's schema for its path, method and
// status; a status the document does not list is an error. With SPOTLIGHT_RECORD_DIR set
// the response is also written there.
func checkSchema(tb testing.TB, method, path string, r response) {
	tb.Helper()
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "" && mt != "application/json" && r.Status < 300 {
		// A row format (CSV, JSON lines): the operation must document it.
		openapi.once.Do(loadOpenAPI)
		op := fmt.Sprintf("/paths/%s/%s/responses/%d/content/%s", escapePtr(route(path)), strings.ToLower(method), r.Status, escapePtr(mt))
		if openapi.err == nil && lookup(openapi.doc, op) == nil {
			tb.Errorf("%s %s → %d %s is not documented in openapi.json", method, path, r.Status, mt)
		}
		return
	}
	if err := validateResponse(method, route(path), r.Status, r.Body); err != nil {
		tb.Errorf("%s %s → %d does not match openapi.json: %v\n%.300s", method, path, r.Status, err, r.Body)
	}
	if dir := os.Getenv("SPOTLIGHT_RECORD_DIR"); dir != "" {
		rec, _ := json.Marshal(map[string]any{"method": method, "path": route(path), "status": r.Status, "body": json.RawMessage(r.Body)})
		name := fmt.Sprintf("go-%06d.json", recorded.Add(1))
		if !json.Valid(r.Body) {
			return
		}
		if err := os.WriteFile(filepath.Join(dir, name), rec, 0o644); err != nil {
			tb.Error(err)
		}
	}
}

func compileSchema(ptr string) (*jsonschema.Schema, error) {
	openapi.mu.Lock()
	defer openapi.mu.Unlock()
	if sch, ok := openapi.schemas[ptr]; ok {
		return sch, nil
	}
	sch, err := openapi.c.Compile("openapi.json#" + ptr)
	if err != nil {
		return nil, err
	}
	if openapi.schemas == nil {
		openapi.schemas = map[string]*jsonschema.Schema{}
	}
	openapi.schemas[ptr] = sch
	return sch, nil
}

func validateResponse(method, path string, status int, body []byte) error {
	openapi.once.Do(loadOpenAPI)
	if openapi.err != nil {
		return openapi.err
	}
	op := fmt.Sprintf("/paths/%s/%s", escapePtr(path), strings.ToLower(method))
	ptr := fmt.Sprintf("%s/responses/%d/content/application~1json/schema", op, status)
	switch {
	case lookup(openapi.doc, op) == nil && status >= 400: // no such operation: any error
		ptr = "/components/schemas/Error"
	case lookup(openapi.doc, ptr) == nil:
		return fmt.Errorf("status %d of %s %s is not documented", status, method, path)
	}
	sch, err := compileSchema(ptr)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

func loadOpenAPI() {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		openapi.err = err
		return
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		openapi.err = err
		return
	}
	openapi.doc, _ = doc.(map[string]any)
	openapi.c = jsonschema.NewCompiler()
	openapi.c.DefaultDraft(jsonschema.Draft2020)
	openapi.err = openapi.c.AddResource("openapi.json", doc)
}

func escapePtr(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func lookup(doc any, ptr string) any {
	for _, tok := range strings.Split(ptr, "/")[1:] {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		doc = m[tok]
	}
	return doc
}

// freePort finds a port on every interface (for the refusal tests).
func freePort(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

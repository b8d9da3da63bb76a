package api_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/api"
)

// FuzzDecodeGenerate sends arbitrary bodies to POST /v1/generate and /v1/attribute. The
// query pool is held full, so a valid body gets 429 instead of running the model (an
// invalid one 400, an oversized one 422): every answer must be a JSON error with a 4xx
// status, never a 5xx or a panic.
func FuzzDecodeGenerate(f *testing.F) {
	for _, seed := range []string{
		`{"prompt":"The ","tokens":3,"top_k":2}`, `{"prompt":"a","layers":["out","block0.ff1"]}`,
		`{"text":"The light","bins":4}`, `{"prompt":1}`, `{"tokens":1e400}`, `[]`, `null`, `"x"`,
		`{"prompt":"a"}{}`, `{"prompt":"\ud800"}`, `{"seed":-1}`, `{"temperature":"NaN"}`,
		`{"Prompt":"a"}`, `{"prompt":"a","prompt":"b"}`, `{"text":"ab","bins":1,"bins":2}`, `{"top_k":0,"tokens":0}`,
	} {
		f.Add(false, seed)
		f.Add(true, seed)
	}
	s := sharedServer(f)
	f.Fuzz(func(t *testing.T, attribute bool, body string) {
		path := "/v1/generate"
		if attribute {
			path = "/v1/attribute"
		}
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Host = "127.0.0.1"
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		release := s.FillQueryPool()
		s.Handler().ServeHTTP(rec, req)
		release()
		wantJSONError(t, rec, body, 400, 413, 422, 429)
	})
}

// wantJSONError fails unless rec is a JSON error with one of the statuses.
func wantJSONError(t *testing.T, rec *httptest.ResponseRecorder, input string, statuses ...int) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" {
		t.Fatalf("%d for %q: not a JSON error: %q", rec.Code, input, rec.Body)
	}
	if !slices.Contains(statuses, rec.Code) {
		t.Fatalf("status %d for %q: %s", rec.Code, input, rec.Body)
	}
}

// FuzzDecodeTrain sends arbitrary bodies to POST /v1/train on a loopback server that has
// been closed, so a body that decodes gets 503 instead of starting a run.
func FuzzDecodeTrain(f *testing.F) {
	for _, seed := range []string{`{"steps":5}`, `{"steps":0}`, `{"steps":1e9}`, `{"steps":"5"}`, `{"Steps":5}`,
		`{"steps":5,"steps":6}`, `{"steps":5}x`, `{`, `[]`, `null`, `{"steps":-1}`, `{"step":5}`} {
		f.Add(seed)
	}
	s := closedServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/v1/train", strings.NewReader(body))
		req.Host = "127.0.0.1"
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		wantJSONError(t, rec, body, 400, 413, 503)
	})
}

// closedServer is a server over the shared directory that was bound to loopback, then
// closed: its routes still answer, but training cannot start.
func closedServer(tb testing.TB) *api.Server {
	s, err := api.New(sharedDir(tb), api.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	s.Close()
	tb.Cleanup(func() { ln.Close() })
	return s
}

// FuzzPlotParams sends arbitrary query strings to GET /v1/plots/timeline.{svg,png} with
// the query pool held full: valid parameters get 429, oversized ones 422, the rest a JSON 400.
func FuzzPlotParams(f *testing.F) {
	for _, seed := range []string{"prompt=The&token=2", "prompt=a&layer=out&bins=5", "token=x", "prompt=a&token=-1",
		"prompt=a&tokens=99999999999999999999", "prompt=%ff", "temperature=NaN&prompt=a", "seed=-1&prompt=a",
		"prompt=a&prompt=b", "prompt=a&rank_by=nope", "prompt=a&top_k=1e3", "%zz", "prompt=a;token=1", ""} {
		f.Add(false, seed)
		f.Add(true, seed)
	}
	s := sharedServer(f)
	f.Fuzz(func(t *testing.T, png bool, params string) {
		path := "/v1/plots/timeline.svg"
		if png {
			path = "/v1/plots/timeline.png"
		}
		req := httptest.NewRequest("GET", path, nil)
		req.Host = "127.0.0.1"
		req.URL.RawQuery = params
		rec := httptest.NewRecorder()
		release := s.FillQueryPool()
		s.Handler().ServeHTTP(rec, req)
		release()
		wantJSONError(t, rec, params, 400, 422, 429)
	})
}

// FuzzStepsPath sends arbitrary path segments to GET /v1/steps/{step}: a step of the
// served checkpoint is a 200 for that step, anything else a JSON 400 or 404.
func FuzzStepsPath(f *testing.F) {
	for _, seed := range []string{"7", "0", "-3", "21", "abc", "99999999999999999999", "+5", "05", "5.0", " 5",
		"%35", "5%2f6", "1e3", "", "..", "\u0035", "٣"} {
		f.Add(seed)
	}
	s := sharedServer(f)
	f.Fuzz(func(t *testing.T, step string) {
		req := httptest.NewRequest("GET", "/v1/steps/x", nil)
		req.Host = "127.0.0.1"
		req.URL.Path, req.URL.RawPath = "/v1/steps/"+step, ""
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code == 200 {
			var st api.StepInfo
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Step < 1 || st.Step > 20 || len(st.Rows) == 0 {
				t.Fatalf("200 for %q: %v %.200s", step, err, rec.Body)
			}
			return
		}
		wantJSONError(t, rec, step, 400, 404)
	})
}

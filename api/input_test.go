package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/spotlight-lm/spotlight/api"
	"github.com/spotlight-lm/spotlight/api/web"
)

// raw sends one request without the schema check (for HEAD and non-JSON bodies).
func (s *testServer) raw(tb testing.TB, method, path string, header ...string) response {
	tb.Helper()
	req, err := http.NewRequest(method, s.base+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
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
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Names under /static/ that are not one of the page's files are a JSON 404, whatever
// their bytes: invalid UTF-8, overlong-encoded dots, "..", a directory.
func TestStaticNotFound(t *testing.T) {
	s := sharedServer(t)
	for _, path := range []string{
		"/static/%ff", "/static/%c0%ae%c0%ae/etc/passwd", "/static/nonexistent.js", "/static/",
		"/static/../openapi.json", "/static/%2e%2e/openapi.json", "/static//app.js",
	} {
		t.Run(path, func(t *testing.T) {
			r := s.call(t, "GET", path, "")
			if code, _ := r.errorCode(t); r.Status != 404 || code != api.CodeNotFound ||
				!strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("got %d %s %q", r.Status, r.Header.Get("Content-Type"), r.Body)
			}
		})
	}
	if r := s.raw(t, "GET", "/static/app.js"); r.Status != 200 || !strings.Contains(r.Header.Get("Content-Type"), "javascript") {
		t.Fatalf("app.js: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
}

// HEAD is answered wherever GET is: the same status and headers, no body.
func TestHead(t *testing.T) {
	s := sharedServer(t)
	for _, tc := range []struct {
		path  string
		want  int
		ctype string
	}{
		{"/healthz", 200, "application/json"},
		{"/", 200, "text/html"},
		{"/index.html", 200, "text/html"},
		{"/static/app.js", 200, "javascript"},
		{"/v1/model", 200, "application/json"},
		{"/v1/steps/3", 200, "application/json"},
		{"/static/nope.js", 404, "application/json"},
		{"/v1/generate", 405, "application/json"}, // POST only: neither GET nor HEAD
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := s.raw(t, "HEAD", tc.path)
			if r.Status != tc.want || !strings.Contains(r.Header.Get("Content-Type"), tc.ctype) || len(r.Body) != 0 {
				t.Fatalf("got %d %q, %d body bytes", r.Status, r.Header.Get("Content-Type"), len(r.Body))
			}
			if get := s.raw(t, "GET", tc.path); get.Status != r.Status {
				t.Fatalf("GET %d, HEAD %d", get.Status, r.Status)
			}
		})
	}
}

// Field names match exactly and once: encoding/json alone would match {"PROMPT":…}
// and keep the last of two "prompt"s.
func TestStrictFields(t *testing.T) {
	s := sharedServer(t)
	for _, tc := range []struct{ name, path, body, field, says string }{
		{"UpperCase", "/v1/generate", `{"PROMPT":"The "}`, "PROMPT", "unknown field"},
		{"MixedCase", "/v1/generate", `{"prompt":"The ","Top_K":2}`, "Top_K", "unknown field"},
		{"Duplicate", "/v1/generate", `{"prompt":"The ","prompt":"a"}`, "prompt", "duplicate field"},
		{"DuplicateLater", "/v1/generate", `{"prompt":"a","tokens":1,"top_k":1,"tokens":2}`, "tokens", "duplicate field"},
		{"AttributeCase", "/v1/attribute", `{"Text":"The light"}`, "Text", "unknown field"},
		{"AttributeDuplicate", "/v1/attribute", `{"text":"The light","text":"ab"}`, "text", "duplicate field"},
		{"TrainCase", "/v1/train", `{"STEPS":1}`, "STEPS", "unknown field"},
		{"TrainDuplicate", "/v1/train", `{"steps":1,"steps":2}`, "steps", "duplicate field"},
		{"EndsInsideObject", "/v1/generate", `{"prompt":"a",`, "", "ends early"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.call(t, "POST", tc.path, tc.body)
			e := decode[struct {
				Error struct{ Code, Message, Field string }
			}](t, r)
			if r.Status != 400 || e.Error.Code != api.CodeBadRequest || e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.says) {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		})
	}
	// An explicit zero is the default, as an absent field is.
	r := s.call(t, "POST", "/v1/generate", `{"prompt":"The ","tokens":0,"top_k":0,"bins":0,"rank_by":"","layers":[]}`)
	if r.Status != 200 {
		t.Fatalf("zeros: got %d %s", r.Status, r.Body)
	}
}

// The page and its files load without the token, API calls need it, and the scheme name
// is case-insensitive.
func TestAuthSchemeAndPage(t *testing.T) {
	s := MustServe(t, sharedDir(t), api.Options{Token: "s3cret", Web: web.Handler()})
	for _, tc := range []struct {
		method, path, auth string
		want               int
	}{
		{"GET", "/v1/model", "bearer s3cret", 200},
		{"GET", "/v1/model", "BEARER s3cret", 200},
		{"GET", "/v1/model", "Bearer   s3cret", 200},
		{"GET", "/v1/model", "Bearers3cret", 401},
		{"GET", "/v1/model", "Bearer ", 401},
		{"GET", "/v1/model", "bearer S3CRET", 401}, // the token itself is exact
		{"HEAD", "/v1/model", "", 401},
		{"GET", "/", "", 200},
		{"GET", "/index.html", "", 200},
		{"HEAD", "/index.html", "", 200},
		{"GET", "/static/style.css", "", 200},
		{"GET", "/static/nope.css", "", 404},
		{"GET", "/v1/plots/timeline.svg?prompt=a", "", 401},
	} {
		t.Run(tc.method+" "+tc.path+" "+tc.auth, func(t *testing.T) {
			r := s.raw(t, tc.method, tc.path, "Authorization", tc.auth)
			if r.Status != tc.want {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		})
	}
}

// The plot parameters are checked by the engine, with the same codes and fields as
// POST /v1/generate; an absent or zero value takes the plot's default.
func TestPlotParams(t *testing.T) {
	s := sharedServer(t)
	for _, q := range []string{"prompt=The+&token=1&layer=out", "prompt=ab&bins=0&top_k=0&tokens=0", "prompt=a&layer="} {
		if r := s.raw(t, "GET", "/v1/plots/timeline.svg?"+q); r.Status != 200 || r.Header.Get("Content-Type") != "image/svg+xml" {
			t.Errorf("%s: got %d %s", q, r.Status, r.Body)
		}
	}
	for _, tc := range []struct{ query, code, field string }{
		{"", api.CodeInvalidInput, "prompt"},
		{"prompt=a&token=x", api.CodeBadRequest, "token"},
		{"prompt=a&token=-1", api.CodeInvalidInput, "token"},
		{"prompt=a&token=3&tokens=2", api.CodeInvalidInput, "token"},
		{"prompt=a&tokens=2000", api.CodeInvalidInput, "tokens"},
		{"prompt=a&bins=1001", api.CodeInvalidInput, "bins"},
		{"prompt=a&top_k=-2", api.CodeInvalidInput, "top_k"},
		{"prompt=a&temperature=-1", api.CodeInvalidInput, "temperature"},
		{"prompt=a&temperature=NaN", api.CodeInvalidInput, "temperature"},
		{"prompt=a&layer=block9.ff1", api.CodeInvalidInput, "layer"},
		{"prompt=a&rank_by=loud", api.CodeInvalidInput, "rank_by"},
		{"prompt=a%E2%82%AC", api.CodeInvalidInput, "prompt"},
		{"prompt=a&seed=-3", api.CodeBadRequest, "seed"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := s.call(t, "GET", "/v1/plots/timeline.svg?"+tc.query, "")
			e := decode[struct {
				Error struct{ Code, Message, Field string }
			}](t, r)
			if r.Status != 400 || e.Error.Code != tc.code || e.Error.Field != tc.field || e.Error.Message == "" {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		})
	}
}

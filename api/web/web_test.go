package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestPageAndAssets(t *testing.T) {
	h := Handler()
	rec := get(t, h, "/")
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.String()
	for _, want := range []string{`src="/static/util.js"`, `src="/static/charts.js"`, `src="/static/evidence.js"`, `src="/static/influence.js"`, `src="/static/app.js"`,
		`href="/static/style.css"`, `id="prompt"`, `id="text"`, `id="train-panel"`, `id="legend"`} {
		if !strings.Contains(body, want) {
			t.Errorf("index.html lacks %s", want)
		}
	}
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("index.html refers to another origin (no CDN allowed)")
	}
	for path, ctype := range map[string]string{"/static/util.js": "javascript", "/static/charts.js": "javascript",
		"/static/evidence.js": "javascript", "/static/influence.js": "javascript", "/static/app.js": "javascript", "/static/style.css": "text/css"} {
		rec := get(t, h, path)
		if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Type"), ctype) {
			t.Errorf("GET %s = %d %s", path, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
	rec = get(t, h, "/nope")
	var e struct {
		Error struct{ Code, Message string }
	}
	if rec.Code != 404 || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error.Code != "not_found" {
		t.Errorf("GET /nope = %d %s", rec.Code, rec.Body)
	}
	// Through echo, as the server mounts it.
	ec := echo.New()
	Register(ec)
	if rec := get(t, ec, "/static/app.js"); rec.Code != 200 {
		t.Errorf("echo GET /static/app.js = %d", rec.Code)
	}
}

func fakeGen(t *testing.T) Generate {
	cfg, err := lm.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	return func(_ context.Context, req query.PlotRequest) (*query.Answer, error) {
		if req.Prompt == "boom" {
			return nil, errors.New("engine failed")
		}
		if err := req.Normalize(cfg); err != nil { // the engine's own check
			return nil, err
		}
		ans := &query.Answer{Prompt: req.Prompt, Step: 30}
		for i := range req.Tokens {
			la := map[string]query.LayerAnswer{}
			for _, l := range []string{req.Layer} {
				la[l] = query.LayerAnswer{Timeline: []query.Bin{
					{FromStep: 1, ToStep: 15, Attention: 2, AbsAttention: new(3.0), Contribution: -0.5},
					{FromStep: 16, ToStep: 30, Attention: 5, AbsAttention: new(5.0), Contribution: 0.7}}}
			}
			ans.Tokens = append(ans.Tokens, query.TokenAnswer{Index: i, Token: "e", Prob: 0.5, Layers: la})
		}
		return ans, nil
	}
}

func TestPlotEndpoints(t *testing.T) {
	ec := echo.New()
	RegisterPlots(ec, fakeGen(t))
	rec := get(t, ec, "/v1/plots/timeline.svg?prompt=The+light&token=2&layer=out")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "image/svg+xml" {
		t.Fatalf("svg: %d %s %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	for _, want := range []string{"training step", "attention mass", "logit units", "token 2"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("svg lacks %q", want)
		}
	}
	rec = get(t, ec, "/v1/plots/timeline.png?prompt=ab")
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), "\x89PNG") {
		t.Fatalf("png: %d", rec.Code)
	}
	// Values out of range are the engine's to refuse (api's tests cover them); here only
	// what is not a number.
	for q, code := range map[string]string{
		"prompt=a&token=x":         "bad_request",
		"prompt=a&bins=1.5":        "bad_request",
		"prompt=a&temperature=hot": "bad_request",
		"prompt=a&seed=-3":         "bad_request",
	} {
		rec := get(t, ec, "/v1/plots/timeline.svg?"+q)
		var e struct {
			Error struct{ Code, Message, Field string }
		}
		if rec.Code != 400 || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error.Code != code || e.Error.Message == "" {
			t.Errorf("%q: %d %s, want 400 %s", q, rec.Code, rec.Body, code)
		}
	}
	// Engine errors go to echo's error handler (the server maps them).
	if rec := get(t, ec, "/v1/plots/timeline.svg?prompt=boom"); rec.Code != 500 {
		t.Errorf("engine error: %d", rec.Code)
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spotlight-lm/spotlight/api"
	"github.com/spotlight-lm/spotlight/api/web"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/query"
)

func TestHealthz(t *testing.T) {
	s := sharedServer(t)
	r := s.call(t, "GET", "/healthz", "")
	if got := decode[map[string]any](t, r); r.Status != 200 || got["status"] != "ok" || got["step"] != 20.0 {
		t.Fatalf("got %d %v", r.Status, got)
	}
}

func TestModel(t *testing.T) {
	s := sharedServer(t)
	r := s.call(t, "GET", "/v1/model", "")
	m := decode[api.ModelInfo](t, r)
	if r.Status != 200 || m.Step != 20 || m.Config.D != 16 || len(m.Vocabulary) != m.Config.Vocab {
		t.Fatalf("got %d %+v", r.Status, m)
	}
	if len(m.Layers) != 3 || m.Layers[2].Name != "out" || m.Layers[2].Entries != 20*4*16 || m.MemoryBytes <= 0 {
		t.Fatalf("layers %+v, memory %d", m.Layers, m.MemoryBytes)
	}
	if m.Training.Running || m.Training.Committed != 20 {
		t.Fatalf("training %+v", m.Training)
	}
}

func TestGenerate(t *testing.T) {
	s := sharedServer(t)
	t.Run("OK", func(t *testing.T) {
		r := s.call(t, "POST", "/v1/generate", `{"prompt":"The ","tokens":3,"top_k":2,"layers":["out"]}`)
		a := decode[query.Answer](t, r)
		if r.Status != 200 || a.Step != 20 || len(a.Tokens) != 3 || len(a.Tokens[0].Layers["out"].Top) != 2 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
	bad := []struct{ name, body, code, field, says string }{
		{"ErrMalformed", `{"prompt":`, api.CodeBadRequest, "", "body ends early"},
		{"ErrSyntax", `{"prompt" "x"}`, api.CodeBadRequest, "", "malformed JSON"},
		{"ErrEmptyBody", ` `, api.CodeBadRequest, "", "empty request body"},
		{"ErrNotObject", `[1]`, api.CodeBadRequest, "", "JSON object"},
		{"ErrUnknownField", `{"prompt":"a","tokenz":3}`, api.CodeBadRequest, "tokenz", "unknown field"},
		{"ErrTrailing", `{"prompt":"a"} {"prompt":"b"}`, api.CodeBadRequest, "", "after the JSON object"},
		{"ErrWrongType", `{"prompt":"a","tokens":"3"}`, api.CodeBadRequest, "tokens", "not a valid int"},
		{"ErrHugeNumber", `{"prompt":"a","tokens":1e40}`, api.CodeBadRequest, "tokens", "not a valid int"},
		{"ErrFraction", `{"prompt":"a","top_k":2.5}`, api.CodeBadRequest, "top_k", "not a valid int"},
		{"ErrNegativeSeed", `{"prompt":"a","seed":-1}`, api.CodeBadRequest, "seed", "not a valid uint64"},
		{"ErrTokensRange", `{"prompt":"a","tokens":5000}`, api.CodeInvalidInput, "tokens", "outside 1..1024"},
		{"ErrTopKRange", `{"prompt":"a","top_k":-1}`, api.CodeInvalidInput, "top_k", "outside"},
		{"ErrTemperature", `{"prompt":"a","temperature":99}`, api.CodeInvalidInput, "temperature", "outside"},
		{"ErrRankBy", `{"prompt":"a","rank_by":"magic"}`, api.CodeInvalidInput, "rank_by", "unknown ranking"},
		{"ErrUnknownLayer", `{"prompt":"a","layers":["block9.ff1"]}`, api.CodeInvalidInput, "layers", "unknown layer"},
		{"ErrEmptyPrompt", `{"prompt":""}`, api.CodeInvalidInput, "prompt", "empty prompt"},
		{"ErrLongPrompt", `{"prompt":"` + strings.Repeat("a", 5000) + `"}`, api.CodeInvalidInput, "prompt", "at most"},
		{"ErrUnknownChars", `{"prompt":"a€b✓"}`, api.CodeInvalidInput, "prompt", `"€", "✓"`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := s.call(t, "POST", "/v1/generate", tc.body)
			e := decode[struct {
				Error struct{ Code, Message, Field string }
			}](t, r)
			if r.Status != 400 || e.Error.Code != tc.code || e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.says) {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		})
	}
	t.Run("ErrTooLarge", func(t *testing.T) {
		r := s.call(t, "POST", "/v1/generate", `{"prompt":"`+strings.Repeat("a", 70000)+`"}`)
		if code, _ := r.errorCode(t); r.Status != 413 || code != api.CodeTooLarge {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
	t.Run("ErrContentType", func(t *testing.T) {
		r := s.call(t, "POST", "/v1/generate", `{"prompt":"a"}`, "Content-Type", "text/plain")
		if code, _ := r.errorCode(t); r.Status != 415 || code != "unsupported_media_type" {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
	t.Run("ErrMethod", func(t *testing.T) {
		r := s.call(t, "GET", "/v1/generate", "")
		if code, _ := r.errorCode(t); r.Status != 405 || code != api.CodeMethod {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
	t.Run("ErrBusy", func(t *testing.T) {
		release := s.FillQueryPool()
		r := s.call(t, "POST", "/v1/generate", `{"prompt":"a","tokens":1}`)
		release()
		if code, _ := r.errorCode(t); r.Status != 429 || code != api.CodeBusy || r.Header.Get("Retry-After") != "1" {
			t.Fatalf("got %d %v %s", r.Status, r.Header, r.Body)
		}
	})
}

func TestAttribute(t *testing.T) {
	s := sharedServer(t)
	t.Run("OK", func(t *testing.T) {
		r := s.call(t, "POST", "/v1/attribute", `{"text":"The light","top_k":3,"rank_by":"attention","bins":4}`)
		a := decode[query.Answer](t, r)
		if r.Status != 200 || a.Step != 20 || a.Text != "The light" || len(a.Tokens) != 8 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
		if l := a.Tokens[0].Layers["block0.ff1"]; len(l.Top) != 3 || len(l.Timeline) != 4 {
			t.Fatalf("layer %+v", l)
		}
	})
	bad := []struct{ name, body, field, says string }{
		{"ErrEmpty", `{"text":""}`, "text", "empty"},
		{"ErrShort", `{"text":"T"}`, "text", "need 2.."},
		{"ErrUnknownChars", `{"text":"Tµ light"}`, "text", `"µ"`},
		{"ErrUnknownField", `{"text":"The","prompt":"x"}`, "prompt", "unknown field"},
		{"ErrBins", `{"text":"The","bins":100000}`, "bins", "outside"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := s.call(t, "POST", "/v1/attribute", tc.body)
			e := decode[struct {
				Error struct{ Code, Message, Field string }
			}](t, r)
			if r.Status != 400 || e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.says) {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		})
	}
}

func TestSteps(t *testing.T) {
	s := sharedServer(t)
	t.Run("OK", func(t *testing.T) {
		r := s.call(t, "GET", "/v1/steps/7", "")
		st := decode[api.StepInfo](t, r)
		if r.Status != 200 || st.Step != 7 || len(st.Rows) != 4 || st.LR <= 0 || st.Clip <= 0 || st.Clip > 1 || st.Loss <= 0 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
		for _, row := range st.Rows {
			ctx := []rune(row.Context)
			if len(ctx) != 16 || len(row.Targets) != 16 {
				t.Fatalf("row %+v", row)
			}
			for i := range 15 { // each target is the next context character
				if string(ctx[i+1]) != row.Targets[i] {
					t.Fatalf("row %d: target %d is %q, context has %q", row.Row, i, row.Targets[i], ctx[i+1])
				}
			}
		}
	})
	for _, tc := range []struct{ path, code string }{
		{"/v1/steps/0", api.CodeNotFound}, {"/v1/steps/21", api.CodeNotFound},
		{"/v1/steps/-3", api.CodeNotFound}, {"/v1/steps/abc", api.CodeBadRequest},
		{"/v1/steps/99999999999999999999", api.CodeBadRequest},
	} {
		t.Run("Err"+tc.path, func(t *testing.T) {
			r := s.call(t, "GET", tc.path, "")
			want := map[string]int{api.CodeNotFound: 404, api.CodeBadRequest: 400}[tc.code]
			if code, _ := r.errorCode(t); r.Status != want || code != tc.code {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		})
	}
}

func TestOpenAPI(t *testing.T) {
	s := sharedServer(t)
	r := s.call(t, "GET", "/openapi.json", "")
	file, err := os.ReadFile("openapi.json")
	if err != nil || r.Status != 200 || string(r.Body) != string(file) {
		t.Fatalf("got %d, %v", r.Status, err)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(file, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("%v %q", err, doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	served := map[string]bool{}
	for _, rt := range s.Routes() {
		served[rt] = true
		if !documented[rt] {
			t.Errorf("route %s is not in openapi.json", rt)
		}
	}
	for op := range documented {
		if !served[op] {
			t.Errorf("openapi.json documents %s, which is not served", op)
		}
	}
}

func TestErrNoRoute(t *testing.T) {
	s := sharedServer(t)
	req, _ := http.NewRequest("GET", s.base+"/v1/nope", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Error struct{ Code string } }
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != 404 || e.Error.Code != api.CodeNotFound {
		t.Fatalf("got %d %v %+v", resp.StatusCode, err, e)
	}
}

// The page's own files hold no data: they load without the token, and the page asks for it.
func TestAuthPageOpen(t *testing.T) {
	s := MustServe(t, sharedDir(t), api.Options{Token: "s3cret", Web: web.Handler()})
	for _, path := range []string{"/", "/static/app.js"} {
		resp, err := http.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s without token: %d", path, resp.StatusCode)
		}
	}
}

func TestAuth(t *testing.T) {
	s := MustServe(t, sharedDir(t), api.Options{Token: "s3cret", Web: web.Handler()})
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"OK", "/v1/model", "Bearer s3cret", 200},
		{"HealthzOpen", "/healthz", "", 200},
		{"ErrMissing", "/v1/model", "", 401},
		{"ErrWrong", "/v1/model", "Bearer nope", 401},
		{"ErrScheme", "/v1/model", "Basic s3cret", 401},
		{"ErrOpenAPI", "/openapi.json", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.call(t, "GET", tc.path, "", "Authorization", tc.auth)
			if r.Status != tc.want {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		})
	}
	t.Run("ErrTrainWithoutToken", func(t *testing.T) {
		r := s.call(t, "POST", "/v1/train", `{"steps":1}`)
		if r.Status != 401 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
}

func sharedDir(t testing.TB) *datadir.Dir {
	sharedServer(t)
	return shared.dir
}

func TestSafety(t *testing.T) {
	s := sharedServer(t)
	t.Run("ErrForeignHost", func(t *testing.T) {
		r := s.call(t, "GET", "/v1/model", "", "Host", "evil.example:8080")
		if code, _ := r.errorCode(t); r.Status != 403 || code != api.CodeForbidden {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
	t.Run("ErrPublicWithoutToken", func(t *testing.T) {
		if _, err := s.Listen("0.0.0.0:" + freePort(t)); err == nil || !strings.Contains(err.Error(), "without a token") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrTrainNotLoopback", func(t *testing.T) {
		// A server that was never bound to loopback (here: not bound at all) and has no
		// token keeps training closed.
		srv, err := api.New(sharedDir(t), api.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		req := httptest.NewRequest("POST", "/v1/train", strings.NewReader(`{"steps":1}`))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		r := response{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
		checkSchema(t, "POST", "/v1/train", r)
		if code, _ := r.errorCode(t); r.Status != 403 || code != api.CodeForbidden {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	})
}

func TestTrain(t *testing.T) {
	dir := MustTrainDir(t, 20)
	s := MustServe(t, dir, api.Options{})
	bad := []struct{ name, body string }{
		{"ErrZero", `{"steps":0}`}, {"ErrTooMany", `{"steps":100001}`}, {"ErrType", `{"steps":"5"}`},
		{"ErrUnknownField", `{"step":5}`}, {"ErrMalformed", `{`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if r := s.call(t, "POST", "/v1/train", tc.body); r.Status != 400 {
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		r := s.call(t, "POST", "/v1/train", `{"steps":20}`)
		st := decode[api.TrainStatus](t, r)
		if r.Status != 202 || !st.Running || st.Until != 40 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
		if r := s.call(t, "POST", "/v1/train", `{"steps":5}`); r.Status != 409 {
			t.Fatalf("second run: got %d %s", r.Status, r.Body)
		}
		for { // queries keep answering, each from one committed checkpoint
			a := decode[query.Answer](t, s.call(t, "POST", "/v1/generate", `{"prompt":"The","tokens":1,"top_k":1}`))
			if a.Step%10 != 0 || a.Step < 20 {
				t.Fatalf("answer from step %d, which was never committed", a.Step)
			}
			if decode[api.ModelInfo](t, s.call(t, "GET", "/v1/model", "")).Step == 40 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		st = decode[api.TrainStatus](t, s.call(t, "GET", "/v1/train", ""))
		if st.Running || st.Committed != 40 || st.Step != 40 || st.EvalLoss == nil || st.FinishedAt == nil {
			t.Fatalf("status %+v", st)
		}
		if r := s.call(t, "GET", "/v1/steps/40", ""); r.Status != 200 {
			t.Fatalf("step 40: got %d", r.Status)
		}
	})
}

// Shutdown during training checkpoints it: the directory resumes at a committed step.
func TestShutdownCheckpoints(t *testing.T) {
	dir := MustTrainDir(t, 10)
	s := MustServe(t, dir, api.Options{})
	if r := s.call(t, "POST", "/v1/train", `{"steps":100000}`); r.Status != 202 {
		t.Fatalf("got %d %s", r.Status, r.Body)
	}
	for decode[api.TrainStatus](t, s.call(t, "GET", "/v1/train", "")).Step < 13 {
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	committed := dir.Store.Steps()
	if committed < 13 {
		t.Fatalf("committed step %d after shutdown", committed)
	}
	tr, err := dir.Resume()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Step != committed {
		t.Fatalf("resumed at %d, committed %d", tr.Step, committed)
	}
	if _, err := datadir.Open(dir.Store.Dir(), true); err == nil {
		t.Fatal("a second open of a directory in use must fail")
	}
}

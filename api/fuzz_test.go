package api_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeGenerate sends arbitrary bodies to POST /v1/generate and /v1/attribute. The
// query pool is held full, so a body that decodes gets 429 instead of running the model
// (the engine validates it inside a pool slot): every answer must be a JSON error with a
// 4xx status, never a 5xx or a panic.
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
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" {
			t.Fatalf("%d: not a JSON error: %q", rec.Code, rec.Body)
		}
		if rec.Code != 400 && rec.Code != 413 && rec.Code != 429 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
	})
}

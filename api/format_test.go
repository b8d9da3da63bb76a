package api_test

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// An answer comes as CSV or JSON lines when ?format= or Accept asks for it.
func TestAnswerFormats(t *testing.T) {
	s := sharedServer(t)
	body := `{"prompt":"The light","tokens":2,"top_k":3,"layers":["out"]}`
	tests := []struct {
		name, path, accept, mime string
	}{
		{"query csv", "/v1/generate?format=csv", "", "text/csv"},
		{"query jsonl", "/v1/generate?format=jsonl", "", "application/x-ndjson"},
		{"accept csv", "/v1/generate", "text/csv", "text/csv"},
		{"accept jsonl among others", "/v1/generate", "text/html;q=0.9, application/x-ndjson", "application/x-ndjson"},
		{"accept anything", "/v1/generate", "*/*", "application/json"},
		{"attribute csv", "/v1/attribute?format=csv", "", "text/csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := body
			if strings.HasPrefix(tt.path, "/v1/attribute") {
				b = `{"text":"The light","top_k":3,"layers":["out"]}`
			}
			h := []string{"Content-Type", "application/json"}
			if tt.accept != "" {
				h = append(h, "Accept", tt.accept)
			}
			r := s.call(t, http.MethodPost, tt.path, b, h...)
			if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), tt.mime) {
				t.Fatalf("%d %s: %.200s", r.Status, r.Header.Get("Content-Type"), r.Body)
			}
			switch tt.mime {
			case "text/csv":
				recs, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
				if err != nil || len(recs) < 2 || recs[0][0] != "checkpoint" {
					t.Fatalf("csv: %v, %d records", err, len(recs))
				}
			case "application/x-ndjson":
				lines := strings.Split(strings.TrimSpace(string(r.Body)), "\n")
				for _, l := range lines {
					var row map[string]any
					if err := json.Unmarshal([]byte(l), &row); err != nil || row["layer"] != "out" {
						t.Fatalf("line %q: %v", l, err)
					}
				}
				if len(lines) != 2*3 {
					t.Fatalf("%d rows, want 2 tokens × 3 entries", len(lines))
				}
			}
		})
	}
	r := s.call(t, http.MethodPost, "/v1/generate?format=xml", body, "Content-Type", "application/json")
	if code, _ := r.errorCode(t); r.Status != http.StatusBadRequest || code != "invalid_input" {
		t.Fatalf("format=xml: %d %s", r.Status, r.Body)
	}
}

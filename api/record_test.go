package api_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestRecordedResponses validates every response recorded in SPOTLIGHT_RECORD_DIR (by
// these tests and by the examples run in CI) against openapi.json.
func TestRecordedResponses(t *testing.T) {
	dir := os.Getenv("SPOTLIGHT_RECORD_DIR")
	if dir == "" {
		t.Skip("SPOTLIGHT_RECORD_DIR is not set")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded responses in %s (%v)", dir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			Method, Path string
			Status       int
			Body         json.RawMessage
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := validateResponse(rec.Method, rec.Path, rec.Status, rec.Body); err != nil {
			t.Errorf("%s: %s %s → %d: %v", filepath.Base(f), rec.Method, rec.Path, rec.Status, err)
		}
	}
	t.Logf("%d recorded responses match openapi.json", len(files))
}

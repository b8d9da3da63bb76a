package dualmem

import (
	"context"
	"strings"
	"testing"
)

// The caller's request decides top-k; the scanner keeps no default of its own.
func TestScanNeedsTopK(t *testing.T) {
	mem, meta := randomMemory(100, 8, 3, 1)
	s := NewScanner(mem, meta)
	q := []Query{{X: make([]float32, 8), Token: 0}}
	for _, k := range []int{0, -1} {
		if _, err := s.Scan(context.Background(), q, ScanOptions{TopK: k}); err == nil || !strings.Contains(err.Error(), "top-k") {
			t.Errorf("TopK %d: got %v", k, err)
		}
	}
	res, err := s.Scan(context.Background(), q, ScanOptions{TopK: 4})
	if err != nil || len(res[0].TopAttention) != 4 {
		t.Fatalf("TopK 4: %v", err)
	}
}

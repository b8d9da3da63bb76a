package dualmem

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestSlogLogger(t *testing.T) {
	tests := []struct {
		name, format string
		args         []any
		want         string // "" when dropped
	}{
		{"warning", "Replaying file id: %d\n", []any{3}, "level=WARN msg=\"badger: Replaying file id: 3\""},
		{"cache advice", "%s might be too small. Metrics: %s\n", []any{"Block cache", "hit: 1 miss: 9"}, ""},
		{"cache life", "Cache life expectancy (in seconds): %+v\n", []any{"{...}"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			old := slog.Default()
			slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
			defer slog.SetDefault(old)
			slogLogger{}.Warningf(tc.format, tc.args...)
			got := buf.String()
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("logged %q, want %q", got, tc.want)
			}
		})
	}
}

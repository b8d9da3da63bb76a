package filemem

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestArena(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	big := MinMapped/4 + 10
	tests := []struct {
		name   string
		arena  *Arena
		n      int
		mapped bool
	}{
		{"nil arena", nil, big, false},
		{"small array", New(dir), 10, false},
		{"large array", New(dir), big, runtime.GOOS == "linux"},
		{"first dir missing", New(missing, dir), big, runtime.GOOS == "linux"},
		{"no dir works", New(missing), big, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.arena
			xs := a.Int32s(tc.n)
			fs := a.Float64s(tc.n)
			if len(xs) != tc.n || len(fs) != tc.n {
				t.Fatalf("lengths %d, %d, want %d", len(xs), len(fs), tc.n)
			}
			for i := range xs {
				if xs[i] != 0 || fs[i] != 0 {
					t.Fatalf("element %d not zero", i)
				}
				xs[i], fs[i] = int32(i), float64(i)/2
			}
			for i := range xs {
				if xs[i] != int32(i) || fs[i] != float64(i)/2 {
					t.Fatalf("element %d reads back %d, %g", i, xs[i], fs[i])
				}
			}
			want := int64(0)
			if tc.mapped {
				want = int64(tc.n) * 12
			}
			if got := a.Mapped(); got != want {
				t.Errorf("Mapped() = %d, want %d", got, want)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if got := a.Mapped(); got != 0 {
				t.Errorf("after Close, Mapped() = %d", got)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("files left in %s: %v", dir, ents)
			}
		})
	}
}

func TestClosedArenaUsesHeap(t *testing.T) {
	a := New(t.TempDir())
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	xs := a.Int32s(MinMapped)
	xs[len(xs)-1] = 7
	if a.Mapped() != 0 {
		t.Errorf("a closed arena mapped %d bytes", a.Mapped())
	}
}

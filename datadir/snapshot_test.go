package datadir

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/query"
)

// TestNextSnapshot: the snapshot of a later commit of a live run reads the same mapped
// memory, extended, and answers exactly as one loaded from scratch.
func TestNextSnapshot(t *testing.T) {
	cfg := tinyConfig(t)
	dir, tr, err := Create(filepath.Join(t.TempDir(), "d"), cfg, corpora.Default()[:20000])
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	defer tr.Close()
	if err := tr.Train(context.Background(), dir.Store, 6, nil); err != nil {
		t.Fatal(err)
	}
	first, err := dir.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := tr.Train(context.Background(), dir.Store, cfg.Steps, nil); err != nil {
		t.Fatal(err)
	}
	next, err := dir.NextSnapshot(first)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	fresh, err := dir.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if first.Step != 6 || next.Step != cfg.Steps || fresh.Step != cfg.Steps {
		t.Fatalf("steps %d, %d, %d", first.Step, next.Step, fresh.Step)
	}
	for _, l := range dir.Store.Meta().Layers {
		a, b := first.Engine.Scanner(l.Name).Mem, next.Engine.Scanner(l.Name).Mem
		if len(b.Keys) <= len(a.Keys) || &a.Keys[0] != &b.Keys[0] || &a.Grads[0] != &b.Grads[0] {
			t.Fatalf("%s: the next snapshot does not extend the mapped memory", l.Name)
		}
	}
	req := query.Request{Prompt: "The rays of light", Tokens: 4}
	got, err := next.Engine.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want, err := fresh.Engine.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("the next snapshot answers differently from a fresh one")
	}
}

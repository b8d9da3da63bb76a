package query

import (
	"context"
	"errors"
	"testing"
)

// An engine's per-token indexes live in file-backed mappings that Close unmaps: Close waits
// for the request in flight, later requests fail cleanly, and another engine of the same
// store (the next checkpoint of a live server) keeps answering.
func TestCloseUnmapsIndexes(t *testing.T) {
	base := engine(t)
	e, err := base.Next(base.model, base.store)
	if err != nil {
		t.Fatal(err)
	}
	if e.arena.Mapped() == 0 || e.arena == base.arena {
		t.Fatalf("the engine's indexes are not in its own mappings (%d bytes mapped)", e.arena.Mapped())
	}
	req := Request{Prompt: "The light ", Tokens: 4, TopK: 3, Scan: ScanPruned, Temperature: temperature(0), Seed: 1}
	done := make(chan error, 1)
	go func() {
		_, err := e.Generate(context.Background(), req)
		done <- err
	}()
	e.Close()
	if err := <-done; err != nil && !errors.Is(err, errClosed) {
		t.Fatalf("a request racing Close: %v", err)
	}
	if e.arena.Mapped() != 0 {
		t.Fatalf("%d bytes still mapped after Close", e.arena.Mapped())
	}
	if _, err := e.Generate(context.Background(), req); !errors.Is(err, errClosed) {
		t.Fatalf("a request after Close: %v", err)
	}
	e.Close() // a second Close does nothing
	for _, scan := range []string{ScanFull, ScanPruned} {
		req.Scan = scan
		if _, err := base.Generate(context.Background(), req); err != nil {
			t.Fatalf("the other engine, %s: %v", scan, err)
		}
	}
}

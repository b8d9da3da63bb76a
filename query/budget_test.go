package query

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/spotlight-lm/spotlight/corpora"
)

// The estimate is within a small factor of the real answer's JSON, over requests whose
// size is dominated by different parts.
func TestEstimateSize(t *testing.T) {
	e := engine(t)
	text := string(corpora.Default()[1000:1100])
	for _, tc := range []struct {
		name string
		req  AttributeRequest
	}{
		{"Defaults", AttributeRequest{Text: text}},
		{"TopK", AttributeRequest{Text: text, TopK: 1000}},
		{"Bins", AttributeRequest{Text: text, Bins: 1000, Layers: []string{"out"}}},
		{"Passages", AttributeRequest{Text: text, Passages: 50, TopK: 1}},
		{"Steps", AttributeRequest{Text: text, TopK: 1000, Steps: []int{3, 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			est, err := e.EstimateAttribute(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			ans, err := e.Attribute(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(ans)
			t.Logf("estimate %d, answer %d bytes", est, len(b))
			if got := float64(len(b)); got > 1.5*float64(est) || got < float64(est)/4 {
				t.Fatalf("estimate %d bytes, answer %d", est, len(b))
			}
		})
	}
	t.Run("ErrInvalid", func(t *testing.T) {
		if _, err := e.EstimateGenerate(Request{Prompt: "a", TopK: -1}); !IsInputError(err) {
			t.Fatalf("got %v", err)
		}
	})
}

// A request whose context ends stops within a second, wherever it is: generation, probe,
// scan or the evidence loops.
func TestCancelled(t *testing.T) {
	e := engine(t)
	req := AttributeRequest{Text: string(corpora.Default()[:300]), TopK: MaxTopK, Bins: MaxBins, Passages: MaxPassages}
	start := time.Now()
	if _, err := e.Attribute(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	for _, after := range []time.Duration{0, full / 5, 2 * full / 3} {
		ctx, cancel := context.WithTimeout(context.Background(), after)
		start := time.Now()
		_, err := e.Attribute(ctx, req)
		cancel()
		if err == nil && time.Since(start) <= after {
			continue // this run was faster than the measured one: it finished before its deadline
		}
		// Within a second on a quiet machine; the bound leaves room for a loaded CI runner
		// while still failing a request that runs to its end.
		if took := time.Since(start) - after; !errors.Is(err, context.DeadlineExceeded) || took > full/4+time.Second {
			t.Fatalf("deadline after %v of %v: %v, returned %v later", after, full, err, took)
		}
	}
	gen := Request{Prompt: "The ", Tokens: MaxTokens, TopK: MaxTopK}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	// Relative to the measured attribute, so a loaded machine slows both alike; a generation of
	// MaxTokens that ran to its end takes many times that.
	if _, err := e.Generate(ctx, gen); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > full+2*time.Second {
		t.Fatalf("generate: %v after %v", err, time.Since(start))
	}
}

package query

import (
	"context"
	"reflect"
	"testing"

	"github.com/spotlight-lm/spotlight/lm"
)

// A generate request whose answers need only the forward pass (exact layers, ranked by
// contribution or attention) takes its probes from the generation: its answers are those of
// the probe's path (Attribute on the generated text, teacher-forced), field for field; the
// other requests still probe.
func TestForwardOnlyMatchesProbe(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		req     Request
		forward bool
	}{
		{"out by contribution", Request{Prompt: "The light ", Tokens: 6, Seed: 2, Layers: []string{lm.OutLayer}}, true},
		{"out by attention, pruned", Request{Prompt: "Colours ", Tokens: 5, RankBy: RankAttention, Layers: []string{lm.OutLayer}, Scan: ScanPruned}, true},
		{"out by pattern", Request{Prompt: "The sun ", Tokens: 4, GroupBy: GroupPattern, Layers: []string{lm.OutLayer}}, true},
		{"out by margin", Request{Prompt: "The sun ", Tokens: 4, RankBy: RankMargin, Layers: []string{lm.OutLayer}}, false},
		{"out by log p", Request{Prompt: "The sun ", Tokens: 4, RankBy: RankLogp, Layers: []string{lm.OutLayer}}, false},
		{"every layer", Request{Prompt: "The light ", Tokens: 3}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			if err := req.Normalize(e.model.Cfg); err != nil {
				t.Fatal(err)
			}
			if got := e.forwardOnly(req); got != tc.forward {
				t.Fatalf("forwardOnly %v, want %v", got, tc.forward)
			}
			gen, err := e.Generate(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			text := req.Prompt + gen.Text
			positions := make([]int, len(gen.Tokens))
			for i := range positions {
				positions[i] = len([]rune(req.Prompt)) + i
			}
			att, err := e.AttributeAt(ctx, AttributeRequest{Text: text, TopK: req.TopK, RankBy: req.RankBy, GroupBy: req.GroupBy,
				Layers: req.Layers, Bins: req.Bins, Passages: req.Passages, Scan: req.Scan}, positions)
			if err != nil {
				t.Fatal(err)
			}
			for i, g := range gen.Tokens {
				a := att.Tokens[i]
				a.Index = g.Index
				if !reflect.DeepEqual(g, a) {
					t.Fatalf("token %d: generated %+v\nattributed %+v", i, g, a)
				}
			}
		})
	}
}

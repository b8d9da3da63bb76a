package query

import (
	"context"
	"reflect"
	"testing"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// TestPrefetchedStepBounds: a pruned request on the output layer gets its step bounds
// computed during the generation, one set per token, and answers exactly as it does when
// the search computes them; a request the generation's probes cannot serve, or not pruned,
// gets none, and bounds for another range are not used.
func TestPrefetchedStepBounds(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	sc := e.Scanner(lm.OutLayer)
	for _, req := range []Request{
		{Prompt: "The light ", Tokens: 7, Seed: 5, GroupBy: GroupToken, Layers: []string{lm.OutLayer}, Scan: ScanPruned},
		{Prompt: "Colours ", Tokens: 5, RankBy: RankAttention, GroupBy: GroupToken, Layers: []string{lm.OutLayer}, Scan: ScanPruned, Steps: []int{4, 17}},
		{Prompt: "The sun ", Tokens: 4, Seed: 2, TopK: 3, GroupBy: GroupPattern, Layers: []string{lm.OutLayer}, Scan: ScanPruned},
	} {
		if err := req.Normalize(e.model.Cfg); err != nil {
			t.Fatal(err)
		}
		prompt, err := e.encode("prompt", req.Prompt)
		if err != nil {
			t.Fatal(err)
		}
		pf := e.prefetchSteps(req)
		if pf == nil {
			t.Fatalf("%+v: no prefetch", req)
		}
		gen, probes, err := e.model.GenerateProbed(prompt, req.Tokens, *req.Temperature, req.Seed, pf.add)
		if err != nil {
			t.Fatal(err)
		}
		pre := pf.finish(len(gen))
		from, to, err := tokenRange(sc, req.Steps)
		if err != nil {
			t.Fatal(err)
		}
		rg := tokens{from, to}
		got := stepsFor(pre, lm.OutLayer, sc, rg)
		if len(got) != len(gen) {
			t.Fatalf("%+v: %d step bounds for %d tokens", req, len(got), len(gen))
		}
		for i, tok := range gen { // each token's own, whatever batch it came in
			q, _ := e.query(lm.OutLayer, req.RankBy, probes[i], tok)
			want, err := sc.BoundSteps([]dualmem.Query{q}, from, to)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got[i], want[0]) {
				t.Fatalf("%+v: token %d's step bounds are not its query's", req, i)
			}
		}
		if stepsFor(pre, lm.OutLayer, sc, tokens{from, to - 1}) != nil || stepsFor(pre, "block0.ff1", sc, rg) != nil {
			t.Fatal("step bounds offered for another range or layer")
		}
		contexts := generatedContexts(prompt, gen)
		with, err := e.explain(ctx, req, contexts, gen, probes, pre)
		if err != nil {
			t.Fatal(err)
		}
		without, err := e.explain(ctx, req, contexts, gen, probes, nil)
		if err != nil {
			t.Fatal(err)
		}
		generated, err := e.Generate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for i := range with.Tokens {
			w, o, g := with.Tokens[i].Layers[lm.OutLayer], without.Tokens[i].Layers[lm.OutLayer], generated.Tokens[i].Layers[lm.OutLayer]
			// What a search reads depends on how its workers share the rounds; the answer does not.
			w.Scan, o.Scan, g.Scan = LayerScan{}, LayerScan{}, LayerScan{}
			if !reflect.DeepEqual(w, o) || !reflect.DeepEqual(g, o) {
				t.Errorf("%s token %d: answers differ with the step bounds prefetched", req.RankBy, i)
			}
		}
	}
	for _, req := range []Request{
		{Prompt: "The", Tokens: 2, Layers: []string{lm.OutLayer}},                                       // full scan
		{Prompt: "The", Tokens: 2, Layers: []string{lm.OutLayer, "block0.ff1"}, Scan: ScanPruned},       // a hidden layer needs the probe's backward pass
		{Prompt: "The", Tokens: 2, Layers: []string{lm.OutLayer}, RankBy: RankMargin, Scan: ScanPruned}, // so does a margin
	} {
		if err := req.Normalize(e.model.Cfg); err != nil {
			t.Fatal(err)
		}
		if e.prefetchSteps(req) != nil {
			t.Errorf("%+v: prefetched", req)
		}
	}
}

package query

import (
	"errors"
	"slices"
	"testing"

	"github.com/spotlight-lm/spotlight/lm"
)

// A zero field means its default, the same for every request type.
func TestZeroMeansDefault(t *testing.T) {
	cfg, err := lm.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	g := Request{Prompt: "a"}
	if err := g.Normalize(cfg); err != nil {
		t.Fatal(err)
	}
	d := DefaultGenerate()
	if g.Tokens != d.Tokens || g.TopK != d.TopK || g.RankBy != d.RankBy || g.Bins != d.Bins || !slices.Equal(g.Layers, cfg.CapturedLayers()) {
		t.Errorf("generate: %+v, defaults %+v", g, d)
	}
	a := AttributeRequest{Text: "ab"}
	if err := a.Normalize(cfg); err != nil {
		t.Fatal(err)
	}
	if da := DefaultAttribute(); a.TopK != da.TopK || a.RankBy != da.RankBy || a.Bins != da.Bins || len(a.Layers) != len(cfg.CapturedLayers()) {
		t.Errorf("attribute: %+v, defaults %+v", a, da)
	}
	p := PlotRequest{Prompt: "a", Token: 2}
	if err := p.Normalize(cfg); err != nil {
		t.Fatal(err)
	}
	if dp := DefaultPlot(); p.Tokens != 3 || p.Layer != dp.Layer || p.TopK != dp.TopK || p.Bins != dp.Bins || p.RankBy != dp.RankBy {
		t.Errorf("plot: %+v, defaults %+v", p, dp)
	}
	if g := p.generation(); g.Tokens != 3 || !slices.Equal(g.Layers, []string{"out"}) || g.Bins != 40 || g.TopK != 1 {
		t.Errorf("plot generation: %+v", g)
	}
}

// Each request type names its own fields in its errors.
func TestRequestErrorFields(t *testing.T) {
	cfg, err := lm.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, field string
		normalize   func() error
	}{
		{"attribute empty", "text", func() error { r := AttributeRequest{}; return r.Normalize(cfg) }},
		{"attribute short", "text", func() error { r := AttributeRequest{Text: "a"}; return r.Normalize(cfg) }},
		{"attribute bad utf-8", "text", func() error { r := AttributeRequest{Text: "a\xff"}; return r.Normalize(cfg) }},
		{"attribute top_k", "top_k", func() error { r := AttributeRequest{Text: "ab", TopK: -1}; return r.Normalize(cfg) }},
		{"attribute layers", "layers", func() error { r := AttributeRequest{Text: "ab", Layers: []string{"x"}}; return r.Normalize(cfg) }},
		{"plot prompt", "prompt", func() error { r := PlotRequest{}; return r.Normalize(cfg) }},
		{"plot token", "token", func() error { r := PlotRequest{Prompt: "a", Token: -1}; return r.Normalize(cfg) }},
		{"plot token past tokens", "token", func() error { r := PlotRequest{Prompt: "a", Token: 3, Tokens: 2}; return r.Normalize(cfg) }},
		{"plot layer", "layer", func() error { r := PlotRequest{Prompt: "a", Layer: "block9.ff1"}; return r.Normalize(cfg) }},
		{"plot bins", "bins", func() error { r := PlotRequest{Prompt: "a", Bins: 1001}; return r.Normalize(cfg) }},
		{"plot temperature", "temperature", func() error { r := PlotRequest{Prompt: "a", Temperature: temperature(-1)}; return r.Normalize(cfg) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ie *InputError
			if err := c.normalize(); !errors.As(err, &ie) || ie.Field != c.field {
				t.Fatalf("got %v, want an error on %s", err, c.field)
			}
		})
	}
}

// An omitted temperature samples at DefaultTemperature; an explicit 0 stays greedy; the
// default's pointer is never shared, so decoding into one default leaves the next alone.
func TestTemperatureDefault(t *testing.T) {
	cfg, err := lm.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		temp   *float64
		want   float64
		method string
	}{
		{"omitted", nil, DefaultTemperature, MethodSample},
		{"explicit 0", temperature(0), 0, MethodGreedy},
		{"explicit 1.5", temperature(1.5), 1.5, MethodSample},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Request{Prompt: "a", Temperature: tc.temp, Seed: 4}
			if err := r.Normalize(cfg); err != nil {
				t.Fatal(err)
			}
			s := r.sampling()
			if *r.Temperature != tc.want || s.Method != tc.method || s.Temperature != tc.want || s.Seed != 4 {
				t.Errorf("temperature %v, sampling %+v; want %v, %s", *r.Temperature, s, tc.want, tc.method)
			}
			p := PlotRequest{Prompt: "a", Temperature: tc.temp}
			if err := p.Normalize(cfg); err != nil {
				t.Fatal(err)
			}
			if *p.Temperature != tc.want {
				t.Errorf("plot temperature %v, want %v", *p.Temperature, tc.want)
			}
		})
	}
	d := DefaultGenerate()
	*d.Temperature = 0
	if got := *DefaultGenerate().Temperature; got != DefaultTemperature {
		t.Errorf("a changed default leaked into the next: %v", got)
	}
}

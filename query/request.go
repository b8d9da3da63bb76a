package query

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spotlight-lm/spotlight/lm"
)

// Limits of a Request.
const (
	MaxPromptChars = 4096
	MaxTokens      = 1024
	MaxTopK        = 1000
	MaxBins        = 1000
	MaxTemperature = 10
)

// InputError is a caller's mistake (the API answers it with HTTP 400).
type InputError struct {
	Field   string // the request field at fault ("prompt", "tokens", ...)
	Message string
	Err     error // the underlying error, if any (e.g. *lm.UnknownCharsError)
}

func (e *InputError) Error() string { return e.Field + ": " + e.Message }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(field, format string, a ...any) *InputError {
	return &InputError{Field: field, Message: fmt.Sprintf(format, a...)}
}

// IsInputError reports whether err is (or wraps) an *InputError.
func IsInputError(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}

// The zero value of every request field means its default: the value of that field in
// DefaultGenerate, DefaultAttribute or DefaultPlot (the CLI's flags, the API and the plots
// all start from these). Layers default to every captured layer.

// DefaultGenerate is the generate request with every default filled in (no prompt).
func DefaultGenerate() Request {
	return Request{Tokens: 32, TopK: 10, RankBy: RankContribution, Bins: 20}
}

// DefaultAttribute is the attribute request with every default filled in (no text).
func DefaultAttribute() AttributeRequest {
	g := DefaultGenerate()
	return AttributeRequest{TopK: g.TopK, RankBy: g.RankBy, Bins: g.Bins}
}

// DefaultPlot is the plot request with every default filled in (no prompt). Its Tokens
// stays 0, which means Token+1: just enough to reach the plotted token.
func DefaultPlot() PlotRequest {
	g := DefaultGenerate()
	return PlotRequest{Layer: "out", Bins: 40, TopK: 1, RankBy: g.RankBy}
}

// Normalize fills defaults and validates everything it can without the tokenizer;
// characters outside the vocabulary are checked by Engine.Generate, which calls it and
// also returns an *InputError. Every error it returns is an *InputError.
func (r *Request) Normalize(cfg lm.Config) error {
	d := DefaultGenerate()
	orDefault(&r.Tokens, d.Tokens)
	if err := checkPrompt(r.Prompt); err != nil {
		return err
	}
	if r.Tokens < 1 || r.Tokens > MaxTokens {
		return inputErr("tokens", "%d outside 1..%d", r.Tokens, MaxTokens)
	}
	if err := checkTemperature(r.Temperature); err != nil {
		return err
	}
	return normalizeOptions(cfg, d.TopK, d.Bins, &r.TopK, &r.RankBy, &r.Bins, &r.Layers, "layers")
}

// Normalize fills defaults and validates the request; Engine.Attribute calls it and also
// checks the text's characters. Every error it returns is an *InputError.
func (r *AttributeRequest) Normalize(cfg lm.Config) error {
	d := DefaultAttribute()
	if r.Text == "" {
		return inputErr("text", "empty text")
	}
	if !utf8.ValidString(r.Text) {
		return inputErr("text", "not valid UTF-8")
	}
	if n := utf8.RuneCountInString(r.Text); n < 2 || n > MaxTokens+1 {
		return inputErr("text", "%d characters, need 2..%d", n, MaxTokens+1)
	}
	return normalizeOptions(cfg, d.TopK, d.Bins, &r.TopK, &r.RankBy, &r.Bins, &r.Layers, "layers")
}

// Normalize fills defaults and validates the request; Engine.Plot calls it. Every error it
// returns is an *InputError.
func (r *PlotRequest) Normalize(cfg lm.Config) error {
	d := DefaultPlot()
	if r.Layer == "" {
		r.Layer = d.Layer
	}
	if err := checkPrompt(r.Prompt); err != nil {
		return err
	}
	if r.Token < 0 {
		return inputErr("token", "token must be ≥ 0, got %d", r.Token)
	}
	orDefault(&r.Tokens, r.Token+1)
	if r.Tokens < 1 || r.Tokens > MaxTokens {
		return inputErr("tokens", "%d outside 1..%d", r.Tokens, MaxTokens)
	}
	if r.Token >= r.Tokens {
		return inputErr("token", "token %d is not among the %d generated tokens (indices 0..%d)", r.Token, r.Tokens, r.Tokens-1)
	}
	if err := checkTemperature(r.Temperature); err != nil {
		return err
	}
	layers := []string{r.Layer}
	return normalizeOptions(cfg, d.TopK, d.Bins, &r.TopK, &r.RankBy, &r.Bins, &layers, "layer")
}

// generation is the normalised plot as the generate request it runs.
func (r *PlotRequest) generation() Request {
	return Request{Prompt: r.Prompt, Tokens: r.Tokens, TopK: r.TopK, RankBy: r.RankBy, Layers: []string{r.Layer},
		Temperature: r.Temperature, Seed: r.Seed, Bins: r.Bins}
}

func orDefault(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

func checkPrompt(p string) error {
	if p == "" {
		return inputErr("prompt", "empty prompt")
	}
	if !utf8.ValidString(p) {
		return inputErr("prompt", "not valid UTF-8")
	}
	if n := utf8.RuneCountInString(p); n > MaxPromptChars {
		return inputErr("prompt", "%d characters, at most %d allowed", n, MaxPromptChars)
	}
	return nil
}

func checkTemperature(t float64) error {
	if math.IsNaN(t) || t < 0 || t > MaxTemperature {
		return inputErr("temperature", "%v outside 0..%d", t, MaxTemperature)
	}
	return nil
}

// normalizeOptions fills and checks the attribution options every request shares; the
// layers are reported under layersField, the request's name for them.
func normalizeOptions(cfg lm.Config, defTopK, defBins int, topK *int, rankBy *string, bins *int, layers *[]string, layersField string) error {
	orDefault(topK, defTopK)
	orDefault(bins, defBins)
	if *rankBy == "" {
		*rankBy = RankContribution
	}
	if len(*layers) == 0 {
		*layers = append([]string(nil), cfg.CapturedLayers()...)
	}
	if *topK < 1 || *topK > MaxTopK {
		return inputErr("top_k", "%d outside 1..%d", *topK, MaxTopK)
	}
	if *rankBy != RankAttention && *rankBy != RankContribution {
		return inputErr("rank_by", "unknown ranking %q (known: %s, %s)", *rankBy, RankAttention, RankContribution)
	}
	if *bins < 1 || *bins > MaxBins {
		return inputErr("bins", "%d outside 1..%d", *bins, MaxBins)
	}
	captured := cfg.CapturedLayers()
	seen := map[string]bool{}
	for _, l := range *layers {
		if !slices.Contains(cfg.LayerNames(), l) {
			return inputErr(layersField, "unknown layer %q (known: %s)", l, strings.Join(cfg.LayerNames(), ", "))
		}
		if !slices.Contains(captured, l) {
			return inputErr(layersField, "layer %q was not captured in training (captured: %s)", l, strings.Join(captured, ", "))
		}
		if seen[l] {
			return inputErr(layersField, "layer %q listed twice", l)
		}
		seen[l] = true
	}
	return nil
}

// Rankings of Request.RankBy.
const (
	RankAttention    = "attention"    // |α|
	RankContribution = "contribution" // signed contribution, most positive first
)

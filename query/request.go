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
	MaxPassages    = 50
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
// all start from these). Layers default to every captured layer, steps to all of them.

// DefaultTemperature is the sampling temperature of a request that names none. Greedy
// decoding of a small model loops ("the Prism the Prism the"); sampling at 0.8 with a fixed
// seed reads like text and stays reproducible.
const DefaultTemperature = 0.8

// DefaultGenerate is the generate request with every default filled in (no prompt). Its
// view, pattern grouping ranked by contribution, is the one `spotlight eval` measured best
// at finding planted facts. Each call returns a new Temperature pointer, so a caller that
// decodes into the result changes nobody else's default.
func DefaultGenerate() Request {
	return Request{Tokens: 32, TopK: 10, RankBy: RankContribution, GroupBy: GroupPattern, Bins: 20, Passages: 3,
		Temperature: temperature(DefaultTemperature), Scan: ScanFull}
}

func temperature(t float64) *float64 { return &t }

// DefaultAttribute is the attribute request with every default filled in (no text).
func DefaultAttribute() AttributeRequest {
	g := DefaultGenerate()
	return AttributeRequest{TopK: g.TopK, RankBy: g.RankBy, GroupBy: g.GroupBy, Bins: g.Bins, Passages: g.Passages, Scan: g.Scan}
}

// DefaultPlot is the plot request with every default filled in (no prompt). Its Tokens
// stays 0, which means Token+1: just enough to reach the plotted token.
func DefaultPlot() PlotRequest {
	g := DefaultGenerate()
	return PlotRequest{Layer: lm.OutLayer, Bins: 40, TopK: 1, RankBy: g.RankBy}
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
	if err := normalizeTemperature(&r.Temperature); err != nil {
		return err
	}
	return normalizeOptions(cfg, r.options(), "layers")
}

// Normalize fills defaults and validates the request; Engine.Attribute calls it and also
// checks the text's characters. Every error it returns is an *InputError.
func (r *AttributeRequest) Normalize(cfg lm.Config) error {
	if r.Text == "" {
		return inputErr("text", "empty text")
	}
	if !utf8.ValidString(r.Text) {
		return inputErr("text", "not valid UTF-8")
	}
	if n := utf8.RuneCountInString(r.Text); n < 2 || n > MaxTokens+1 {
		return inputErr("text", "%d characters, need 2..%d", n, MaxTokens+1)
	}
	return normalizeOptions(cfg, r.options(), "layers")
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
	if err := normalizeTemperature(&r.Temperature); err != nil {
		return err
	}
	orDefault(&r.TopK, d.TopK)
	orDefault(&r.Bins, d.Bins)
	layers := []string{r.Layer}
	o := optionFields{topK: &r.TopK, rankBy: &r.RankBy, groupBy: new(string), scan: new(string), layers: &layers, bins: &r.Bins, passages: new(int)}
	return normalizeOptions(cfg, o, "layer")
}

// generation is the normalised plot as the generate request it runs.
func (r *PlotRequest) generation() Request {
	d := DefaultGenerate()
	return Request{Prompt: r.Prompt, Tokens: r.Tokens, TopK: r.TopK, RankBy: r.RankBy, GroupBy: d.GroupBy, Layers: []string{r.Layer},
		Temperature: r.Temperature, Seed: r.Seed, Bins: r.Bins, Passages: d.Passages, Scan: d.Scan}
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

// normalizeTemperature fills a nil temperature with DefaultTemperature (into a new
// pointer, never through the caller's) and checks it; 0 stays 0, greedy.
func normalizeTemperature(t **float64) error {
	if *t == nil {
		*t = temperature(DefaultTemperature)
	}
	if v := **t; math.IsNaN(v) || v < 0 || v > MaxTemperature {
		return inputErr("temperature", "%v outside 0..%d", v, MaxTemperature)
	}
	return nil
}

// sampling describes the decoding of a normalised request.
func (r *Request) sampling() *Sampling {
	if *r.Temperature == 0 {
		return &Sampling{Method: MethodGreedy, Seed: r.Seed}
	}
	return &Sampling{Method: MethodSample, Temperature: *r.Temperature, Seed: r.Seed}
}

// optionFields points at the attribution options of one request.
type optionFields struct {
	topK, bins, passages  *int
	rankBy, groupBy, scan *string
	layers                *[]string
	steps                 []int
}

func (r *Request) options() optionFields {
	return optionFields{&r.TopK, &r.Bins, &r.Passages, &r.RankBy, &r.GroupBy, &r.Scan, &r.Layers, r.Steps}
}

func (r *AttributeRequest) options() optionFields {
	return optionFields{&r.TopK, &r.Bins, &r.Passages, &r.RankBy, &r.GroupBy, &r.Scan, &r.Layers, r.Steps}
}

// normalizeOptions fills and checks the attribution options every request shares; the
// layers are reported under layersField, the request's name for them.
func normalizeOptions(cfg lm.Config, o optionFields, layersField string) error {
	d := DefaultGenerate()
	orDefault(o.topK, d.TopK)
	orDefault(o.bins, d.Bins)
	orDefault(o.passages, d.Passages)
	if *o.rankBy == "" {
		*o.rankBy = d.RankBy
	}
	if *o.groupBy == "" {
		*o.groupBy = d.GroupBy
	}
	if *o.scan == "" {
		*o.scan = d.Scan
	}
	if len(*o.layers) == 0 {
		*o.layers = append([]string(nil), cfg.CapturedLayers()...)
	}
	if *o.topK < 1 || *o.topK > MaxTopK {
		return inputErr("top_k", "%d outside 1..%d", *o.topK, MaxTopK)
	}
	if !slices.Contains(Rankings, *o.rankBy) {
		return inputErr("rank_by", "unknown ranking %q (known: %s)", *o.rankBy, strings.Join(Rankings, ", "))
	}
	if !slices.Contains(Groupings, *o.groupBy) {
		return inputErr("group_by", "unknown grouping %q (known: %s)", *o.groupBy, strings.Join(Groupings, ", "))
	}
	if !slices.Contains(ScanModes, *o.scan) {
		return inputErr("scan", "unknown scan mode %q (known: %s)", *o.scan, strings.Join(ScanModes, ", "))
	}
	if *o.bins < 1 || *o.bins > MaxBins {
		return inputErr("bins", "%d outside 1..%d", *o.bins, MaxBins)
	}
	if *o.passages < 1 || *o.passages > MaxPassages {
		return inputErr("passages", "%d outside 1..%d", *o.passages, MaxPassages)
	}
	if s := o.steps; len(s) != 0 && (len(s) != 2 || s[0] < 1 || s[0] > s[1]) {
		return inputErr("steps", "want [from, to] with 1 ≤ from ≤ to, got %v", s)
	}
	captured := cfg.CapturedLayers()
	seen := map[string]bool{}
	for _, l := range *o.layers {
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
	RankContribution = "contribution" // signed contribution to the token's logit, most positive first
	RankMargin       = "margin"       // signed contribution to the logit minus the runner-up's logit
	RankLogp         = "logp"         // signed first-order contribution to log p of the token
)

// Groupings of Request.GroupBy: how the top list is ordered.
const (
	GroupToken   = "token"   // by the ranking alone
	GroupPattern = "pattern" // the training tokens that shared the most context first, then by the ranking
)

// Groupings lists every Request.GroupBy.
var Groupings = []string{GroupToken, GroupPattern}

// Rankings lists every Request.RankBy.
var Rankings = []string{RankContribution, RankMargin, RankLogp, RankAttention}

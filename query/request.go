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

	DefaultPassages = 3
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

// DefaultRequest holds the value of every field a request leaves at zero. The default view
// (pattern grouping, ranked by contribution) is the one `spotlight eval` measured best at
// finding planted facts.
func DefaultRequest() Request {
	return Request{Tokens: 32, TopK: 10, RankBy: RankContribution, GroupBy: GroupPattern, Bins: 20, Passages: DefaultPassages}
}

// Normalize fills defaults (DefaultRequest, and all captured layers) and validates
// everything it can without the tokenizer; characters outside the vocabulary are checked by
// Engine.Generate, which also returns an *InputError. Every error it returns is an *InputError.
func (r *Request) Normalize(cfg lm.Config) error {
	d := DefaultRequest()
	if r.Tokens == 0 {
		r.Tokens = d.Tokens
	}
	if r.TopK == 0 {
		r.TopK = d.TopK
	}
	if r.RankBy == "" {
		r.RankBy = d.RankBy
	}
	if r.GroupBy == "" {
		r.GroupBy = d.GroupBy
	}
	if r.Bins == 0 {
		r.Bins = d.Bins
	}
	if r.Passages == 0 {
		r.Passages = d.Passages
	}
	if len(r.Layers) == 0 {
		r.Layers = append([]string(nil), cfg.CapturedLayers()...)
	}
	if r.Prompt == "" {
		return inputErr("prompt", "empty prompt")
	}
	if !utf8.ValidString(r.Prompt) {
		return inputErr("prompt", "not valid UTF-8")
	}
	if n := utf8.RuneCountInString(r.Prompt); n > MaxPromptChars {
		return inputErr("prompt", "%d characters, at most %d allowed", n, MaxPromptChars)
	}
	return r.validateRest(cfg)
}

func (r *Request) validateRest(cfg lm.Config) error {
	if r.Tokens < 1 || r.Tokens > MaxTokens {
		return inputErr("tokens", "%d outside 1..%d", r.Tokens, MaxTokens)
	}
	if r.TopK < 1 || r.TopK > MaxTopK {
		return inputErr("top_k", "%d outside 1..%d", r.TopK, MaxTopK)
	}
	if !slices.Contains(Rankings, r.RankBy) {
		return inputErr("rank_by", "unknown ranking %q (known: %s)", r.RankBy, strings.Join(Rankings, ", "))
	}
	if !slices.Contains(Groupings, r.GroupBy) {
		return inputErr("group_by", "unknown grouping %q (known: %s)", r.GroupBy, strings.Join(Groupings, ", "))
	}
	if r.Passages < 1 || r.Passages > MaxPassages {
		return inputErr("passages", "%d outside 1..%d", r.Passages, MaxPassages)
	}
	if len(r.Steps) != 0 && (len(r.Steps) != 2 || r.Steps[0] < 1 || r.Steps[0] > r.Steps[1]) {
		return inputErr("steps", "want [from, to] with 1 ≤ from ≤ to, got %v", r.Steps)
	}
	if math.IsNaN(r.Temperature) || r.Temperature < 0 || r.Temperature > MaxTemperature {
		return inputErr("temperature", "%v outside 0..%d", r.Temperature, MaxTemperature)
	}
	if r.Bins < 1 || r.Bins > MaxBins {
		return inputErr("bins", "%d outside 1..%d", r.Bins, MaxBins)
	}
	captured := cfg.CapturedLayers()
	seen := map[string]bool{}
	for _, l := range r.Layers {
		if !slices.Contains(cfg.LayerNames(), l) {
			return inputErr("layers", "unknown layer %q (known: %s)", l, strings.Join(cfg.LayerNames(), ", "))
		}
		if !slices.Contains(captured, l) {
			return inputErr("layers", "layer %q was not captured in training (captured: %s)", l, strings.Join(captured, ", "))
		}
		if seen[l] {
			return inputErr("layers", "layer %q listed twice", l)
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

package query

import "fmt"

// The size estimate of an answer, in bytes of JSON: per part, what one item of it takes
// in a typical answer (measured on the tiny preset, context 64: an entry came to about 185
// bytes, a timeline bin to 95, a by_offset position to 100, a passage to 2,300).
const (
	tokenBytes   = 200 // index, token, prob, verbatim without its text
	layerBytes   = 500 // totals, dual check, counterfactual, objective
	entryBytes   = 120 // an Entry without its context
	offsetBytes  = 100 // a Position
	binBytes     = 100 // a Bin
	passageBytes = 150 // a Passage without its text and per-character values
	charBytes    = 9   // one per-character value of a passage, with its text character
	patternBytes = 120 // a Pattern row without its suffix and examples
	// patternRows is the typical number of Pattern rows (the longest context a training
	// token shared with the query, plus one); they measured 3 to 8 per token.
	patternRows = 9
)

// TooLargeError refuses a request whose answer would exceed the caller's limit (the API
// answers it with HTTP 422 before doing any work).
type TooLargeError struct {
	Estimate, Limit int64 // bytes
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the answer would be about %s, over the limit of %s per answer: ask for fewer tokens, layers, or a smaller top_k, bins or passages",
		FormatBytes(e.Estimate), FormatBytes(e.Limit))
}

// FormatBytes writes n in MiB (or KiB, or bytes when small).
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// EstimateGenerate normalises a copy of req and estimates the size of its answer in bytes
// of JSON. It returns the errors Generate would return for the request's fields.
func (e *Engine) EstimateGenerate(req Request) (int64, error) {
	if err := req.Normalize(e.model.Cfg); err != nil {
		return 0, err
	}
	return e.estimate(req.Tokens, req.options()), nil
}

// EstimateAttribute is EstimateGenerate for an attribute request.
func (e *Engine) EstimateAttribute(req AttributeRequest) (int64, error) {
	if err := req.Normalize(e.model.Cfg); err != nil {
		return 0, err
	}
	return e.estimate(len([]rune(req.Text))-1, req.options()), nil
}

// EstimatePlot is EstimateGenerate for the generation of a plot (its answer is held in
// memory while the plot is drawn).
func (e *Engine) EstimatePlot(req PlotRequest) (int64, error) {
	if err := req.Normalize(e.model.Cfg); err != nil {
		return 0, err
	}
	g := req.generation()
	return e.estimate(g.Tokens, g.options()), nil
}

// estimate is tokens × (per token + layers × (top entries and their positions + bins +
// passages' characters + pattern rows and their examples)), from normalised options. The
// top list holds at most one entry per training window (batch row of a step) in range.
func (e *Engine) estimate(tokens int, o optionFields) int64 {
	cfg := e.model.Cfg
	steps := int64(e.model.Step)
	if len(o.steps) == 2 {
		steps = max(0, min(int64(o.steps[1]), steps)-int64(o.steps[0])+1)
	}
	ctx := int64(cfg.Ctx)
	entry := entryBytes + ctx
	top := min(int64(*o.topK), steps*int64(cfg.Batch))
	bins := min(int64(*o.bins), max(int64(e.model.Step), 1))
	// The passages that contribute most run longer than the mean: count twice its length.
	n := int64(len(e.pass.starts) - 1)
	chars := min(MaxPassageChars, 2*e.pass.starts[n]/max(n, 1))
	layer := layerBytes + top*(entry+offsetBytes) + bins*binBytes
	if *o.scan != ScanPruned { // a pruned answer has neither passages nor patterns
		layer += int64(*o.passages)*(passageBytes+chars*charBytes) +
			min(patternRows, ctx+1)*(patternBytes+ctx/2+PatternExamples*entry)
	}
	return int64(tokens) * (tokenBytes + 2*ctx + int64(len(*o.layers))*layer)
}

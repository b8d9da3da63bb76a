// Package query answers "which training tokens did this prediction use?": it generates or
// teacher-forces text with a model (package lm), scans each layer's memory (package
// dualmem), and assembles the per-token answer that the CLI and the HTTP API both return.
package query

import (
	"fmt"

	"github.com/spotlight-lm/spotlight/dualmem"
)

// Request is a generation request: the body of POST /v1/generate and the flags of
// `spotlight generate`. A zero field means its default (DefaultGenerate).
type Request struct {
	Prompt  string   `json:"prompt"`
	Tokens  int      `json:"tokens"`   // 1..1024 tokens to generate
	TopK    int      `json:"top_k"`    // 1..1000 training tokens per layer
	RankBy  string   `json:"rank_by"`  // one of Rankings: what the top list is ranked by
	GroupBy string   `json:"group_by"` // one of Groupings: how the top list is ordered
	Layers  []string `json:"layers"`   // default: all captured layers
	// Temperature samples the continuation at this temperature, seeded by Seed so the same
	// request gives the same text; explicit 0 is greedy decoding. Nil (omitted in JSON) is
	// the default, DefaultTemperature: a pointer because 0 is a value here, not "default".
	Temperature *float64 `json:"temperature"`
	Seed        uint64   `json:"seed"`
	Bins        int      `json:"bins"`     // timeline bins over training steps
	Passages    int      `json:"passages"` // training passages listed per token and layer
	// Steps limits the answer to training steps [from, to] (inclusive); empty means all.
	Steps []int  `json:"steps,omitempty"`
	Scan  string `json:"scan"` // one of ScanModes: how much of the memory an answer reads
}

// AttributeRequest is the body of POST /v1/attribute: the text to score teacher-forced,
// with generate's attribution options. A zero field means its default (DefaultAttribute).
type AttributeRequest struct {
	Text     string   `json:"text"`
	TopK     int      `json:"top_k"`
	RankBy   string   `json:"rank_by"`
	GroupBy  string   `json:"group_by"`
	Layers   []string `json:"layers"`
	Bins     int      `json:"bins"`
	Passages int      `json:"passages"`
	Steps    []int    `json:"steps,omitempty"`
	Scan     string   `json:"scan"`
}

// PlotRequest is the query of GET /v1/plots/timeline.{svg,png}: a generation and the one
// token and layer whose timeline is drawn. A zero field means its default (DefaultPlot).
type PlotRequest struct {
	Prompt      string
	Token       int // index of the generated token to plot
	Tokens      int // tokens to generate (0: Token+1)
	Layer       string
	Bins        int
	RankBy      string
	TopK        int      // training tokens listed per layer (the plot needs none)
	Temperature *float64 // as Request.Temperature: nil is the default, 0 greedy
	Seed        uint64
}

// Answer is the whole response: the generated (or scored) text and, per token, per layer,
// where the prediction came from.
type Answer struct {
	Prompt string `json:"prompt"`
	Text   string `json:"text"` // the generated continuation (for attribute: the scored text)
	Step   int    `json:"step"` // the checkpoint (model and memory) this answer saw
	// Sampling says how a generated text was decoded (absent for attribute, which scores a
	// given text): sending its temperature and seed back reproduces the text.
	Sampling *Sampling     `json:"sampling,omitempty"`
	Tokens   []TokenAnswer `json:"tokens"`
}

// Decoding methods of Sampling.Method.
const (
	MethodGreedy = "greedy" // the most probable token at every step (temperature 0)
	MethodSample = "sample" // drawn from the softmax at Temperature, seeded by Seed
)

// Sampling is how a generation chose its tokens.
type Sampling struct {
	Method      string  `json:"method"` // MethodGreedy or MethodSample
	Temperature float64 `json:"temperature"`
	Seed        uint64  `json:"seed"`
}

// TokenAnswer explains one generated token.
type TokenAnswer struct {
	Index    int                    `json:"index"` // position in Text
	Token    string                 `json:"token"`
	Prob     float64                `json:"prob"` // probability the model gave it (at temperature 1)
	Layers   map[string]LayerAnswer `json:"layers"`
	Verbatim Verbatim               `json:"verbatim"`
}

// LayerAnswer is one layer's attribution of one token.
type LayerAnswer struct {
	FirstOrder bool `json:"first_order"` // contributions are a first-order projection (hidden layers, log p)
	// Objective is what contributions add up to: "logit" (the token's logit), "margin" (its
	// logit minus the runner-up's) or "logp" (its log-probability, first order).
	Objective string  `json:"objective"`
	RunnerUp  string  `json:"runner_up,omitempty"` // the token with the next-highest logit (margin)
	Top       []Entry `json:"top"`                 // never two entries from the same training window
	// W0Term is the initial weights' share of the token's logit (out) or of the projected
	// output (hidden layers); BiasTerm the bias's.
	// PositiveTotal, NegativeTotal and TopShare need every token's contribution: nil (null)
	// when the scan omitted them.
	W0Term             float64    `json:"w0_term"`
	BiasTerm           float64    `json:"bias_term"`
	PositiveTotal      *float64   `json:"positive_total"` // sum of all positive contributions
	NegativeTotal      *float64   `json:"negative_total"` // sum of all negative contributions
	TopShare           *float64   `json:"top_share"`      // Σ|contribution| of Top / Σ|contribution| of all
	DualCheck          DualCheck  `json:"dual_check"`
	CounterfactualProb *float64   `json:"counterfactual_prob,omitempty"` // out only: prob with Top's training tokens removed (weight and bias paths)
	Timeline           []Bin      `json:"timeline"`
	ByOffset           []Position `json:"by_offset"` // the Top corpus positions summed over epochs
	Patterns           []Pattern  `json:"patterns"`  // the weight term split by context shared with the query, n = 0…
	Passages           []Passage  `json:"passages"`  // the training sentences that contributed most, over all positions and epochs
	Scan               LayerScan  `json:"scan"`
}

// Scan modes of Request.Scan.
const (
	// ScanFull reads every key of the layer's memory in range: every figure of the answer.
	ScanFull = "full"
	// ScanPruned takes the totals, W0 and bias terms, timeline and dual check from the
	// per-step aggregates, without reading keys, and omits the figures that need every
	// token's own α or contribution (listed in LayerScan.Omitted).
	ScanPruned = "pruned"
)

// ScanModes lists every Request.Scan.
var ScanModes = []string{ScanFull, ScanPruned}

// LayerScan says how a layer's answer was computed and what it read of the layer's keys and
// gradients. A pass over the memory serves every token of a request at once, and each
// token's answer counts it; single tokens scored again (the pattern members, by_offset,
// passages) add their bytes.
type LayerScan struct {
	Mode string `json:"mode"` // ScanFull, or ScanPruned when the aggregates answered
	dualmem.ScanStats
	// Omitted names the figures left out (null) because they need every token's key: JSON
	// names, "timeline.abs_attention" for that field of every bin.
	Omitted []string `json:"omitted,omitempty"`
}

// Entry is one training token.
type Entry struct {
	// Index is the token's position in the layer's memory (Engine.Scanner(layer).Mem), for
	// tools that work on the memory itself; it means nothing outside this engine's memory.
	Index        int     `json:"-"`
	Step         int     `json:"step"`
	Row          int     `json:"row"`
	Pos          int     `json:"pos"`
	Offset       int64   `json:"offset"`  // corpus offset (in characters) of the target
	Context      string  `json:"context"` // the context window the model saw
	Target       string  `json:"target"`  // the character it was trained to predict
	Attention    float64 `json:"attention"`
	Contribution float64 `json:"contribution"`
}

// DualCheck compares the model's output with the memory's reconstruction.
type DualCheck struct {
	Primal float64 `json:"primal"`
	Dual   float64 `json:"dual"`
	AbsErr float64 `json:"abs_err"`
	// MaxAbsErr (hidden layers) is max |y − dual| over the whole output vector.
	MaxAbsErr float64 `json:"max_abs_err,omitempty"`
}

// Bin is one slice of training time.
type Bin struct {
	FromStep     int      `json:"from_step"`
	ToStep       int      `json:"to_step"`
	Attention    float64  `json:"attention"`     // Σ α over the bin's tokens (signed attention mass)
	AbsAttention *float64 `json:"abs_attention"` // Σ |α|; nil (null) when the scan omitted it
	Contribution float64  `json:"contribution"`  // Σ contribution
}

// AbsAttentionOrZero is AbsAttention, 0 when omitted (plots draw full answers only).
func (b Bin) AbsAttentionOrZero() float64 {
	if b.AbsAttention == nil {
		return 0
	}
	return *b.AbsAttention
}

// Position is a corpus position with everything it contributed across epochs.
type Position struct {
	Offset       int64   `json:"offset"`
	Count        int     `json:"count"` // times it was trained on
	Attention    float64 `json:"attention"`
	Contribution float64 `json:"contribution"`
}

// Verbatim is the longest suffix of the context found in the training corpus.
type Verbatim struct {
	Length  int     `json:"length"` // characters
	Text    string  `json:"text"`
	Offsets []int64 `json:"offsets"` // where it occurs (first few, in corpus order)
	Count   int     `json:"count"`   // occurrences in all
}

// DamagedError is a layer whose memory failed its checksums (dualmem.Store.Fault): it
// cannot answer until its files are written again, while the other layers still do.
type DamagedError struct {
	Layer string
	Err   error
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("layer %q cannot answer: %v; ask for the other layers (\"layers\"), or stop the server and run `spotlight verify --repair`, which writes the segment files again from the database", e.Layer, e.Err)
}

func (e *DamagedError) Unwrap() error { return e.Err }

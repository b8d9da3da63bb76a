package lm

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Config is every hyperparameter of a run. It is stored with the model (unknown keys are an
// error when it is read back), so a data directory always says how it was made.
type Config struct {
	Preset string `json:"preset"` // the row of Presets this started from

	// Model shape.
	D      int `json:"d"`      // residual width
	Blocks int `json:"blocks"` // transformer blocks
	Heads  int `json:"heads"`  // attention heads; D must divide by it
	Ctx    int `json:"ctx"`    // context length in characters
	Vocab  int `json:"vocab"`  // filled from the tokenizer

	// Optimizer: SGD family, exactly PyTorch's SGD(momentum, weight_decay) + clipping; the
	// training step and the memory read these through Config.Optimizer.
	LR          float64 `json:"lr"`           // peak learning rate
	Momentum    float64 `json:"momentum"`     // heavy-ball μ
	WeightDecay float64 `json:"weight_decay"` // coupled λ on weights; none on biases and LayerNorm
	Clip        float64 `json:"clip"`         // global-norm clip C; 0 disables
	Warmup      int     `json:"warmup"`       // linear warmup steps, then cosine decay to MinLRFrac·LR
	MinLRFrac   float64 `json:"min_lr_frac"`  // floor of the cosine as a fraction of LR

	// Run.
	Batch           int      `json:"batch"`            // rows per step
	Steps           int      `json:"steps"`            // total steps (the cosine schedule spans these)
	Seed            uint64   `json:"seed"`             // init and batch order
	CheckpointEvery int      `json:"checkpoint_every"` // steps between checkpoints
	Layers          []string `json:"layers"`           // captured layers; empty means all
	Precision       string   `json:"precision"`        // memory storage: f32 or f16
}

// Presets are the named rows of the hyperparameter table.
var Presets = map[string]Config{
	// tiny: the embedded default; a useful model in about two minutes on 2 cores. SGD gains
	// more from steps than from rows per step (measured at equal time: batch 8 × 2000 steps
	// reach eval loss 1.98, batch 16 × 600 only 2.37), and memory grows with tokens seen.
	"tiny": {D: 64, Blocks: 1, Heads: 4, Ctx: 64, LR: 0.3, Momentum: 0.9, WeightDecay: 1e-4,
		Clip: 1, Warmup: 30, MinLRFrac: 0.1, Batch: 8, Steps: 2000, Seed: 1, CheckpointEvery: 200, Precision: "f32"},
	// small: the benchmark shape (d=128, 2 blocks, 4 heads, context 64, batch 32).
	"small": {D: 128, Blocks: 2, Heads: 4, Ctx: 64, LR: 0.3, Momentum: 0.9, WeightDecay: 1e-4,
		Clip: 1, Warmup: 50, MinLRFrac: 0.1, Batch: 32, Steps: 2000, Seed: 1, CheckpointEvery: 100, Precision: "f32"},
}

// Preset returns a copy of the named preset.
func Preset(name string) (Config, error) {
	c, ok := Presets[name]
	if !ok {
		names := make([]string, 0, len(Presets))
		for n := range Presets {
			names = append(names, n)
		}
		slices.Sort(names)
		return Config{}, fmt.Errorf("unknown preset %q (known: %s)", name, strings.Join(names, ", "))
	}
	c.Preset = name
	return c, nil
}

// FF is the feed-forward width.
func (c Config) FF() int { return 4 * c.D }

// Validate reports the first impossible setting.
func (c Config) Validate() error {
	checks := []struct {
		bad bool
		msg string
	}{
		{c.D <= 0 || c.Blocks <= 0 || c.Heads <= 0 || c.Ctx <= 0, "d, blocks, heads and ctx must be positive"},
		{c.Heads > 0 && c.D%c.Heads != 0, fmt.Sprintf("d=%d does not divide into %d heads", c.D, c.Heads)},
		{c.Batch <= 0, "batch must be positive"},
		{c.Steps <= 0, "steps must be positive"},
		{!(c.LR > 0), "lr must be positive"},
		{c.Momentum < 0 || c.Momentum >= 1, "momentum must be in [0, 1)"},
		{c.WeightDecay < 0, "weight-decay must be non-negative"},
		{c.Clip < 0, "clip must be non-negative (0 disables)"},
		{c.Warmup < 0, "warmup must be non-negative"},
		{c.MinLRFrac < 0 || c.MinLRFrac > 1, "min-lr-frac must be in [0, 1]"},
		{c.CheckpointEvery <= 0, "checkpoint-every must be positive"},
		{c.Precision != "f32" && c.Precision != "f16", fmt.Sprintf("precision must be f32 or f16, not %q", c.Precision)},
	}
	for _, ch := range checks {
		if ch.bad {
			return fmt.Errorf("invalid config: %s", ch.msg)
		}
	}
	seen := map[string]bool{}
	for _, l := range c.Layers {
		if seen[l] {
			return fmt.Errorf("layer %q listed twice", l)
		}
		seen[l] = true
		if _, _, err := c.LayerDims(l); err != nil {
			return err
		}
	}
	return nil
}

// ParseConfig reads a stored config, refusing unknown keys.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("stored config: %w", err)
	}
	return c, c.Validate()
}

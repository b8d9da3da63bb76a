package dualmem

import (
	"encoding/json"
	"testing"

	"github.com/spotlight-lm/spotlight/lm"
)

// Metadata written before the optimizer was stored whole kept momentum and the decays at
// the top level; it must read into the same optimizer, the rest of it from the config.
func TestMetaReadsLegacyOptimizer(t *testing.T) {
	cfg, _ := lm.Preset("tiny")
	cfg.Vocab, cfg.Momentum, cfg.WeightDecay = 40, 0.8, 2e-4
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := json.Marshal(map[string]any{"format": 1, "precision": "f32",
		"layers":   []LayerSpec{{Name: "out", DIn: 64, DOut: 40}},
		"momentum": 0.8, "weight_decay": 2e-4, "bias_decay": 0, "config": raw})
	if err != nil {
		t.Fatal(err)
	}
	var m Meta
	if err := json.Unmarshal(legacy, &m); err != nil {
		t.Fatal(err)
	}
	if m.Optimizer != cfg.Optimizer() {
		t.Errorf("legacy meta read as %+v, want %+v", m.Optimizer, cfg.Optimizer())
	}
	if len(m.Layers) != 1 || m.Precision != F32 || string(m.Config) != string(raw) {
		t.Errorf("legacy meta fields lost: %+v", m)
	}

	// A legacy meta whose config does not parse still gets its decays.
	legacy, _ = json.Marshal(map[string]any{"format": 1, "momentum": 0.5, "weight_decay": 0.1, "bias_decay": 0.01})
	if err := json.Unmarshal(legacy, &m); err != nil {
		t.Fatal(err)
	}
	if want := (lm.Optimizer{Momentum: 0.5, WeightDecay: 0.1, BiasDecay: 0.01}); m.Optimizer != want {
		t.Errorf("legacy meta without config read as %+v, want %+v", m.Optimizer, want)
	}

	// The current form round-trips whole.
	cur := Meta{Format: FormatVersion, Precision: F16, Optimizer: cfg.Optimizer(), Config: raw}
	b, err := json.Marshal(cur)
	if err != nil {
		t.Fatal(err)
	}
	var back Meta
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Optimizer != cur.Optimizer || back.Precision != F16 {
		t.Errorf("meta round trip: %+v, want %+v", back, cur)
	}
}

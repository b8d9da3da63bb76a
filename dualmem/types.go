// Package dualmem stores and reads the dual form of a model's linear layers: for every
// training step, the per-token keys (layer inputs) and raw output gradients, plus the
// schedule needed to turn them into attention values. It implements lm.Memory with lm's
// capture types; the dual form itself (coefficients, reconstruction, counterfactual removal,
// the primal-vs-dual check) is in dualform.go. It is the only package that imports Badger.
package dualmem

import (
	"encoding/json"
	"errors"

	"github.com/spotlight-lm/spotlight/lm"
)

// FormatVersion is the on-disk format of a data directory. A directory written with another
// version is refused rather than misread, except format 1: it is format 2 without sparse
// layer records (sparse.go), so it is read, and written to without them, which keeps it
// readable by the programs that wrote it.
const FormatVersion = 2

// sparseFormat is the first format whose layer records may be sparse.
const sparseFormat = 2

// Precision is how keys and gradients are stored.
type Precision string

const (
	F32 Precision = "f32" // exact: the dual form reproduces the layer to float32 precision
	F16 Precision = "f16" // half the bytes; the dual check is only good to ~1e-3
)

// LayerSpec names a captured linear layer y = x·W + b with W of shape [DIn, DOut].
type LayerSpec struct {
	Name string `json:"name"`
	DIn  int    `json:"d_in"`
	DOut int    `json:"d_out"`
}

// Meta is fixed when a data directory is created.
type Meta struct {
	Format    int          `json:"format"`
	Precision Precision    `json:"precision"`
	Layers    []LayerSpec  `json:"layers"`
	Optimizer lm.Optimizer `json:"optimizer"` // the dual form needs its momentum and decays
	Config    []byte       `json:"config"`    // the model config as JSON; owned by package lm
	// SegmentsOnly marks a benchmark memory too large for two copies on one disk: the keys
	// and gradients go to the segment files alone, the database keeps every step's header,
	// token arrays and commits. Nothing can rebuild its segment files (ErrSegmentsOnly).
	SegmentsOnly bool `json:"segments_only,omitempty"`
}

// UnmarshalJSON also reads the metadata of data directories written before the optimizer
// was stored whole, which kept momentum, weight_decay and bias_decay at the top level; the
// rest of their optimizer comes from their stored config.
func (m *Meta) UnmarshalJSON(b []byte) error {
	type plain Meta
	var v struct {
		plain
		Momentum    *float64 `json:"momentum"`
		WeightDecay *float64 `json:"weight_decay"`
		BiasDecay   *float64 `json:"bias_decay"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*m = Meta(v.plain)
	if v.Momentum == nil && v.WeightDecay == nil && v.BiasDecay == nil {
		return nil
	}
	if cfg, err := lm.ParseConfig(m.Config); err == nil {
		m.Optimizer = cfg.Optimizer()
	}
	for _, f := range []struct {
		dst *float64
		src *float64
	}{{&m.Optimizer.Momentum, v.Momentum}, {&m.Optimizer.WeightDecay, v.WeightDecay}, {&m.Optimizer.BiasDecay, v.BiasDecay}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	return nil
}

// Errors a caller can tell apart.
var (
	ErrNotSpotlight = errors.New("not a Spotlight data directory")
	ErrFormat       = errors.New("data directory written by an incompatible format version")
	ErrLocked       = errors.New("data directory is in use by another process")
	ErrNoModel      = errors.New("data directory holds no trained model")
)

// MetaFor is the memory's metadata for a run: the captured layers of the layer table and the
// optimizer, both from the config.
func MetaFor(cfg lm.Config) (Meta, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return Meta{}, err
	}
	meta := Meta{Precision: Precision(cfg.Precision), Optimizer: cfg.Optimizer(), Config: raw}
	for _, l := range cfg.CapturedTable() {
		meta.Layers = append(meta.Layers, LayerSpec{Name: l.Name, DIn: l.DIn, DOut: l.DOut})
	}
	return meta, nil
}

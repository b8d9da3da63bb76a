package datadir

import (
	"fmt"
	"math"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// Tolerance is the largest relative error verify accepts between primal and dual outputs
// of a float32 memory; F16Tolerance that of a float16 one, whose keys and gradients carry
// only 11 significant bits.
const (
	Tolerance    = 1e-4
	F16Tolerance = 1e-2
)

// LayerReport compares one layer's primal output with its reconstruction from memory.
type LayerReport struct {
	Name      string  `json:"name"`
	MaxAbsErr float64 `json:"max_abs_err"`
	MaxRelErr float64 `json:"max_rel_err"` // relative to the largest |primal output|
	Samples   int     `json:"samples"`
	Entries   int     `json:"entries"` // training tokens in the memory
}

// Report is the result of Verify.
type Report struct {
	OK        bool          `json:"ok"`
	Tolerance float64       `json:"tolerance"`
	Step      int           `json:"step"`
	Precision string        `json:"precision"`
	Layers    []LayerReport `json:"layers"`
}

// Verify rebuilds every captured layer's output on held-out contexts from its memory alone
// and compares it with the model's real output.
func (d *Dir) Verify(m *lm.Model, samples int, progress func(layer string, done, total int)) (*Report, error) {
	if samples < 1 {
		return nil, fmt.Errorf("samples must be at least 1, got %d", samples)
	}
	corpus := m.Tok.EncodeCorpus(string(d.Store.Corpus()))
	contexts, targets := lm.HeldOut(corpus, m.Cfg.Ctx, samples)
	probes, err := m.Probe(contexts, targets)
	if err != nil {
		return nil, err
	}
	meta := d.Store.Meta()
	rep := &Report{OK: true, Tolerance: Tolerance, Step: m.Step, Precision: string(meta.Precision)}
	if meta.Precision == dualmem.F16 {
		rep.Tolerance = F16Tolerance
	}
	for _, spec := range meta.Layers {
		mem, err := d.Store.LoadLayer(spec.Name, func(done, total int) {
			if progress != nil {
				progress(spec.Name, done, total)
			}
		})
		if err != nil {
			return nil, err
		}
		lr := LayerReport{Name: spec.Name, Samples: len(probes), Entries: len(mem.Step)}
		for _, p := range probes {
			abs, scale := maxErr(p.Layers[spec.Name].Y, mem.Reconstruct(meta, p.Layers[spec.Name].X))
			lr.MaxAbsErr = math.Max(lr.MaxAbsErr, abs)
			lr.MaxRelErr = math.Max(lr.MaxRelErr, abs/math.Max(scale, 1e-30))
		}
		rep.OK = rep.OK && lr.MaxRelErr <= rep.Tolerance
		rep.Layers = append(rep.Layers, lr)
	}
	return rep, nil
}

// maxErr returns max |primal−dual| and max |primal|.
func maxErr(primal []float32, dual []float64) (abs, scale float64) {
	for j, y := range primal {
		abs = math.Max(abs, math.Abs(float64(y)-dual[j]))
		scale = math.Max(scale, math.Abs(float64(y)))
	}
	return abs, scale
}

package datadir

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

// LayerReport compares one layer's primal output with its reconstruction from memory.
type LayerReport struct {
	Name      string  `json:"name"`
	MaxAbsErr float64 `json:"max_abs_err"`
	MaxRelErr float64 `json:"max_rel_err"` // dualmem.Check.RelErr: relative to the largest |primal output|
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
	// Segments is what the check of the segment files (the layout answers read) found:
	// "ok", "none" (no segment files), or the step and layer whose bytes changed.
	Segments string `json:"segments"`
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
	rep := &Report{OK: true, Tolerance: meta.Precision.Tolerance(), Step: m.Step, Precision: string(meta.Precision)}
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
			c := dualmem.Compare(p.Layers[spec.Name].Y, mem.Reconstruct(meta, p.Layers[spec.Name].X))
			lr.MaxAbsErr = math.Max(lr.MaxAbsErr, c.AbsErr)
			lr.MaxRelErr = math.Max(lr.MaxRelErr, c.RelErr())
		}
		rep.OK = rep.OK && lr.MaxRelErr <= rep.Tolerance
		rep.Layers = append(rep.Layers, lr)
	}
	// The layers above were read from the database; answers read the segment files.
	rep.Segments = "ok"
	if !d.Store.HasSegments() {
		rep.Segments = "none"
	} else if err := d.Store.CheckSegments(context.Background(), nil); err != nil {
		var se *dualmem.SegmentError
		if !errors.As(err, &se) {
			return nil, err
		}
		rep.OK, rep.Segments = false, se.Error()
	}
	return rep, nil
}

// CheckSegments reads every committed step of the segment files against their checksums;
// a damaged layer is then refused by the query engines (dualmem.Store.Fault).
func (d *Dir) CheckSegments(ctx context.Context) error { return d.Store.CheckSegments(ctx, nil) }

// RepairSegments writes the segment files again from the database (a read-write Dir).
func (d *Dir) RepairSegments(progress func(layer string, done, total int)) error {
	return d.Store.RebuildSegments(progress)
}

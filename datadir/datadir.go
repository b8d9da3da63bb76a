// Package datadir ties a model (package lm) to its memory (package dualmem) in one data
// directory: creating it for a new run, resuming a run, and loading the model for queries.
package datadir

import (
	"errors"
	"fmt"
	"os"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// Dir is an open data directory.
type Dir struct {
	Store *dualmem.Store
	Cfg   lm.Config

	influence influenceCache // recent Influence runs
}

// Create validates everything first (config, corpus), so bad input writes nothing, then
// creates dir with the corpus, the initial weights and a step-0 checkpoint in one step (a
// run killed meanwhile leaves nothing a later Create refuses), and returns the trainer
// ready for step 1.
func Create(dir string, cfg lm.Config, corpus []byte) (*Dir, *lm.Trainer, error) {
	tr, err := lm.NewTrainer(cfg, string(corpus))
	if err != nil {
		return nil, nil, err
	}
	cfg = tr.Cfg
	meta, err := dualmem.MetaFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	ckpt, err := tr.Checkpoint()
	if err != nil {
		tr.Close()
		return nil, nil, err
	}
	store, err := dualmem.Create(dir, meta, corpus, tr.Initial(), ckpt)
	if err != nil {
		tr.Close()
		return nil, nil, err
	}
	return &Dir{Store: store, Cfg: cfg}, tr, nil
}

// Open opens an existing data directory for writing (training, serving) or reading.
func Open(dir string, readOnly bool) (*Dir, error) {
	open := dualmem.Open
	if readOnly {
		open = dualmem.OpenReadOnly
	}
	store, err := open(dir)
	if errors.Is(err, dualmem.ErrNoModel) && hasFiles(dir) {
		return nil, fmt.Errorf("%s: %w", dir, dualmem.ErrNotSpotlight)
	}
	if err != nil {
		return nil, err
	}
	cfg, err := lm.ParseConfig(store.Meta().Config)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return &Dir{Store: store, Cfg: cfg}, nil
}

// Resume discards memory beyond the last checkpoint (a crash may have left some) and
// returns a trainer positioned right after it.
func (d *Dir) Resume() (*lm.Trainer, error) {
	_, ckpt, err := d.Store.Checkpoint()
	if err != nil {
		return nil, err
	}
	if err := d.Store.DiscardUncommitted(); err != nil {
		return nil, err
	}
	return lm.ResumeTrainer(ckpt, string(d.Store.Corpus()))
}

// Model loads the last committed checkpoint for inference.
func (d *Dir) Model() (*lm.Model, error) {
	_, ckpt, err := d.Store.Checkpoint()
	if err != nil {
		return nil, err
	}
	return lm.LoadModel(ckpt)
}

// Close closes the store.
func (d *Dir) Close() error {
	if d == nil || d.Store == nil {
		return nil
	}
	return d.Store.Close()
}

// hasFiles reports whether dir exists and holds anything but what a killed create left:
// someone else's directory, not an empty one waiting for a model.
func hasFiles(dir string) bool {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != dualmem.CreatingDir {
			return true
		}
	}
	return false
}

// DefaultKeepEvery is the steps between the checkpoints a store keeps for retraining
// unless told otherwise (Store.SetKeepEvery).
const DefaultKeepEvery = dualmem.DefaultKeepEvery

// KeptCheckpoint is one checkpoint kept for retraining: its step and stored size.
type KeptCheckpoint = dualmem.KeptCheckpoint

// Errors of a data directory that callers tell apart (the store's own, so errors.Is works
// on what any datadir or store call returns).
var (
	ErrLocked      = dualmem.ErrLocked      // another process holds the directory
	ErrExists      = dualmem.ErrExists      // create: the directory already holds a model
	ErrNotWritable = dualmem.ErrNotWritable // the directory cannot take writes
	ErrDiskFull    = dualmem.ErrDiskFull    // not enough free space for the next write
)

// Engine loads a query engine for m over the directory's memory; progress (may be nil) is
// called while a layer is read onto the heap, when it is not read in place.
func (d *Dir) Engine(m *lm.Model, progress func(layer string, done, total int)) (*query.Engine, error) {
	return query.NewEngine(m, d.Store, progress)
}

// IsEmpty reports whether dir has no model yet (missing, or holding nothing).
func IsEmpty(err error) bool { return errors.Is(err, dualmem.ErrNoModel) }

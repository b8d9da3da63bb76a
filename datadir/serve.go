package datadir

import (
	"fmt"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// Snapshot is one consistent checkpoint: the model and the memory of the same committed step.
type Snapshot struct {
	Model  *lm.Model
	Engine *query.Engine
	Step   int
}

// Close frees the engine's memory and the model.
func (sn *Snapshot) Close() {
	sn.Engine.Close()
	sn.Model.Close()
}

// Snapshot loads the last commit's model and memory. A commit that lands while the engine
// loads makes model and memory disagree; then it simply tries again.
func (d *Dir) Snapshot() (*Snapshot, error) { return d.NextSnapshot(nil) }

// NextSnapshot is Snapshot for a server that holds prev (nil if none): the new engine
// reads the same mapped memory, extended to the new steps, and reuses what the commit did
// not change; prev stays usable until its holders close it.
func (d *Dir) NextSnapshot(prev *Snapshot) (*Snapshot, error) {
	for try := 0; ; try++ {
		step, ckpt, err := d.Store.Checkpoint()
		if err != nil {
			return nil, err
		}
		model, err := lm.LoadModel(ckpt)
		if err != nil {
			return nil, err
		}
		var eng *query.Engine
		if prev != nil {
			eng, err = prev.Engine.Next(model, d.Store)
		} else {
			eng, err = query.NewEngine(model, d.Store, nil)
		}
		if err != nil {
			model.Close()
			return nil, err
		}
		if eng.Step() == step && model.Step == step {
			return &Snapshot{Model: model, Engine: eng, Step: step}, nil
		}
		eng.Close()
		model.Close()
		if try == 10 {
			return nil, fmt.Errorf("memory kept moving while loading checkpoint %d", step)
		}
	}
}

// PrepareMemory builds the memory's read layout (the segment files, derived from the
// database) if it is missing or stale, calling progress per layer; serving then starts
// without that wait. A read-only directory is left as it is.
func (d *Dir) PrepareMemory(progress func(layer string, done, total int)) error {
	return d.Store.PrepareSegments(progress)
}

// Steps is the last committed step.
func (d *Dir) Steps() int { return d.Store.Steps() }

// Corpus is the training text.
func (d *Dir) Corpus() []byte { return d.Store.Corpus() }

// StepTokens reads what committed step t trained on: its step record with the corpus
// offsets and targets of every token (and the vectors of the cheapest layer to read, which
// come with them).
func (d *Dir) StepTokens(t int) (*lm.Step, error) {
	layers := d.Store.Meta().Layers
	best := layers[0]
	for _, l := range layers[1:] {
		if l.DIn+l.DOut < best.DIn+best.DOut {
			best = l
		}
	}
	return d.Store.ReadStep(t, best.Name)
}

// Memory is the store as a trainer's memory, calling onCommit after every successful commit.
func (d *Dir) Memory(onCommit func()) lm.Memory {
	return notifyingMemory{Store: d.Store, onCommit: onCommit}
}

type notifyingMemory struct {
	*dualmem.Store
	onCommit func()
}

func (m notifyingMemory) Commit(step int, checkpoint []byte) error {
	err := m.Store.Commit(step, checkpoint)
	if err == nil {
		m.onCommit()
	}
	return err
}

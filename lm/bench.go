package lm

import (
	"fmt"
	"time"
)

// BenchResult is the measured training speed of one configuration.
type BenchResult struct {
	Name         string  `json:"name"`
	Steps        int     `json:"steps"`
	MsPerStep    float64 `json:"ms_per_step"`
	TokensPerSec float64 `json:"tokens_per_s"`
}

// DisableCapture recompiles the train step to capture nothing: the baseline that capture's
// overhead is measured against.
func (t *Trainer) DisableCapture() error {
	ex, err := newExecs(t.Cfg, nil)
	if err != nil {
		return err
	}
	t.ex.finalize()
	t.ex = ex
	return nil
}

// BenchTrain times `steps` optimizer steps of tr after `warmup` untimed ones, handing what
// they capture to mem (nil: dropped).
func BenchTrain(name string, tr *Trainer, warmup, steps int, mem Memory) (BenchResult, error) {
	if mem == nil {
		mem = discard{}
	}
	var start time.Time
	var tokens int
	for i := range warmup + steps {
		if i == warmup {
			start = time.Now()
		}
		st, err := tr.TrainStep(tr.BatchAt(tr.Step + 1))
		if err != nil {
			return BenchResult{}, err
		}
		if err := mem.AppendStep(st); err != nil {
			return BenchResult{}, err
		}
		tokens = st.Tokens()
	}
	if err := mem.Commit(tr.Step, nil); err != nil { // the capture's writes count
		return BenchResult{}, fmt.Errorf("bench commit: %w", err)
	}
	dt := time.Since(start).Seconds() / float64(steps)
	return BenchResult{Name: name, Steps: steps, MsPerStep: dt * 1000, TokensPerSec: float64(tokens) / dt}, nil
}

// discard is a Memory that keeps nothing.
type discard struct{}

func (discard) AppendStep(*Step) error   { return nil }
func (discard) Commit(int, []byte) error { return nil }

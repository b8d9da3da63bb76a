package lm

import (
	"encoding/json"
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Restore puts the trainer back to the state a checkpoint of the same run recorded (weights,
// momentum buffers, step), reusing the compiled graphs. Training on from there with the same
// batches repeats the original run; masking some of them (Batch.Mask) gives a retrain without
// those tokens. The checkpoint must come from a run with the same config.
func (t *Trainer) Restore(ckpt []byte) error {
	cfg, _, st, err := decodeCheckpoint(ckpt)
	if err != nil {
		return err
	}
	a, _ := json.Marshal(cfg)
	b, _ := json.Marshal(t.Cfg)
	if string(a) != string(b) {
		return fmt.Errorf("restore: checkpoint config %s differs from the trainer's %s", a, b)
	}
	params, bufs := t.ex.toTensors(st.Params), t.ex.toTensors(st.Bufs)
	t.mu.Lock()
	for _, old := range append(append([]*tensors.Tensor{}, t.params...), t.bufs...) {
		old.FinalizeAll()
	}
	t.params, t.bufs, t.Step = params, bufs, st.Step
	t.mu.Unlock()
	return nil
}

package lm

import "github.com/gomlx/gomlx/pkg/core/tensors"

// Memory receives what training captures; package dualmem's Store implements it.
type Memory interface {
	// AppendStep records one step's keys and gradients; it is not durable until Commit.
	// It may Release st once it has what it needs.
	AppendStep(st *Step) error
	// Commit makes every step up to step durable together with the checkpoint.
	Commit(step int, checkpoint []byte) error
}

// StepInfo is what one optimizer step recorded, without the per-token vectors.
type StepInfo struct {
	Step int     `json:"step"` // 1-based
	LR   float32 `json:"lr"`   // η_t exactly as applied
	Clip float32 `json:"clip"` // c_t = min(1, C/(‖∇‖+1e-6)) exactly as applied
	Loss float32 `json:"loss"`
	Rows int     `json:"rows"` // batch rows
	Ctx  int     `json:"ctx"`  // positions per row; token i is row i/Ctx, position i%Ctx
}

// Tokens is the number of training tokens of the step, Rows·Ctx.
func (s StepInfo) Tokens() int { return s.Rows * s.Ctx }

// Step is one optimizer step with its captured tokens. Token i of the step (row-major over
// [Rows, Ctx]) saw the context corpus[Offsets[i]-pos-1 : Offsets[i]] and was trained to
// predict Targets[i] = corpus[Offsets[i]] (offsets are in tokens, not bytes).
type Step struct {
	StepInfo
	Offsets []int64
	Targets []int32
	Layers  map[string]LayerStep

	held []*tensors.Tensor // the tensors whose buffers Layers' slices are (TrainStep)
}

// Release hands the buffers of a trained step's vectors back to the backend, which reuses
// them for later steps instead of allocating new ones. Only the step's last user may call it
// (the store, once it has written the step): Layers is emptied and its slices must not be
// read afterwards. A step never released is garbage collected like any value; one that holds
// no backend buffers (built by hand) is left as it is.
func (s *Step) Release() {
	if len(s.held) == 0 {
		return
	}
	for _, t := range s.held {
		t.FinalizeAll()
	}
	s.held, s.Layers = nil, nil
}

// LayerStep holds one layer's captured vectors for one step, row-major.
type LayerStep struct {
	Keys  []float32 // [N, DIn]  the layer's input at each token
	Grads []float32 // [N, DOut] ∂L/∂y at each token (carries the 1/N of the mean loss)
}

// Initial holds a captured layer's weights before step 1 (W_1, b_1), the start of its dual
// form.
type Initial struct {
	W []float32 // [DIn, DOut]
	B []float32 // [DOut]
}

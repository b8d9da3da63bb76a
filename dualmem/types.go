// Package dualmem stores and reads the dual form of a model's linear layers: for every
// training step, the per-token keys (layer inputs) and raw output gradients, plus the
// schedule needed to turn them into attention values. It is the only package that imports
// Badger.
package dualmem

import "errors"

// FormatVersion is the on-disk format of a data directory. A directory written with another
// version is refused rather than misread.
const FormatVersion = 1

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
	Format      int         `json:"format"`
	Precision   Precision   `json:"precision"`
	Layers      []LayerSpec `json:"layers"`
	Momentum    float64     `json:"momentum"`     // μ, heavy-ball
	WeightDecay float64     `json:"weight_decay"` // λ for weights (coupled, PyTorch SGD)
	BiasDecay   float64     `json:"bias_decay"`   // λ for biases (0 in Spotlight)
	Config      []byte      `json:"config"`       // the model config as JSON; owned by package lm
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

// Step is one optimizer step with its captured tokens. Token i of the step (row-major over
// [Rows, Ctx]) saw the context corpus[Offsets[i]-pos-1 : Offsets[i]] and was trained to
// predict Targets[i] = corpus[Offsets[i]] (offsets are in tokens, not bytes).
type Step struct {
	StepInfo
	Offsets []int64
	Targets []int32
	Layers  map[string]LayerStep
}

// LayerStep holds one layer's captured vectors for one step, row-major.
type LayerStep struct {
	Keys  []float32 // [N, DIn]  the layer's input at each token
	Grads []float32 // [N, DOut] ∂L/∂y at each token (carries the 1/N of the mean loss)
}

// Initial holds a captured layer's weights before step 1, W_1 in SPEC §1.
type Initial struct {
	W []float32 // [DIn, DOut]
	B []float32 // [DOut]
}

// Errors a caller can tell apart.
var (
	ErrNotSpotlight = errors.New("not a Spotlight data directory")
	ErrFormat       = errors.New("data directory written by an incompatible format version")
	ErrLocked       = errors.New("data directory is in use by another process")
	ErrNoModel      = errors.New("data directory holds no trained model")
)

package lm

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// probeBatch is the fixed row count of probe calls: one compiled graph serves every request.
const probeBatch = 8

// Model is a trained model at one step, ready for inference. It is safe for concurrent use.
type Model struct {
	Cfg  Config
	Tok  *Tokenizer
	Step int

	mu     sync.Mutex // one graph execution at a time; the backend already uses every core
	ex     *execs
	params []*tensors.Tensor
}

// LayerProbe is one layer read at one position: input x, output y (primal) and the gradient
// of the probe's objective w.r.t. y.
type LayerProbe struct {
	X, Y, DY []float32
}

// Probe is the model read at the last position of one context.
type Probe struct {
	Logits   []float32 // [V] next-token logits
	RunnerUp int32     // the token with the highest logit other than the target's
	Layers   map[string]LayerProbe
}

// Objective is what a probe differentiates: a function of the next-token logits.
type Objective int

const (
	ObjLogit  Objective = iota // the target's logit
	ObjMargin                  // the target's logit minus the runner-up's
	ObjLogP                    // the target's log-probability (its gradient; linear to first order)
)

// LoadModel rebuilds a model from a checkpoint blob.
func LoadModel(ckpt []byte) (*Model, error) {
	cfg, tok, st, err := decodeCheckpoint(ckpt)
	if err != nil {
		return nil, err
	}
	ex, err := newExecs(cfg, cfg.CapturedTable())
	if err != nil {
		return nil, err
	}
	return &Model{Cfg: cfg, Tok: tok, Step: st.Step, ex: ex, params: ex.toTensors(st.Params)}, nil
}

// Close frees the compiled graphs.
func (m *Model) Close() { m.ex.finalize() }

// ParamSpecs lists the model's parameters.
func (m *Model) ParamSpecs() []ParamSpec { return m.ex.specs }

// Probe reads the model after each context (the last Ctx tokens of it count) and, for each
// layer, the gradient of targets[i]'s logit.
func (m *Model) Probe(contexts [][]int32, targets []int32) ([]Probe, error) {
	return m.ProbeFor(contexts, targets, ObjLogit)
}

// ProbeFor is Probe with the gradient of another objective of targets[i].
func (m *Model) ProbeFor(contexts [][]int32, targets []int32, obj Objective) ([]Probe, error) {
	if len(contexts) != len(targets) {
		return nil, fmt.Errorf("probe: %d contexts, %d targets", len(contexts), len(targets))
	}
	out := make([]Probe, 0, len(contexts))
	for lo := 0; lo < len(contexts); lo += probeBatch {
		hi := min(lo+probeBatch, len(contexts))
		ps, err := m.probeChunk(contexts[lo:hi], targets[lo:hi], obj)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

func (m *Model) probeChunk(contexts [][]int32, targets []int32, obj Objective) ([]Probe, error) {
	c := m.Cfg
	tok := make([]int32, probeBatch*c.Ctx)
	pos := make([]int32, probeBatch)
	tgt := make([]int32, probeBatch)
	wr, wp := make([]float32, probeBatch), make([]float32, probeBatch)
	for i := range wr {
		wr[i] = float32(b2i(obj == ObjMargin))
		wp[i] = float32(b2i(obj == ObjLogP))
	}
	for i, ctx := range contexts {
		if len(ctx) == 0 {
			return nil, errors.New("probe: empty context")
		}
		pos[i], tgt[i] = m.window(tok, i, ctx), targets[i]
	}
	m.mu.Lock()
	outs, err := m.ex.probe.Exec(args(m.params,
		tensors.FromFlatDataAndDimensions(tok, probeBatch, c.Ctx),
		tensors.FromFlatDataAndDimensions(pos, probeBatch),
		tensors.FromFlatDataAndDimensions(tgt, probeBatch),
		tensors.FromFlatDataAndDimensions(wr, probeBatch),
		tensors.FromFlatDataAndDimensions(wp, probeBatch))...)
	m.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	o := newProbeOutputs[*tensors.Tensor](m.ex.probed)
	if err = fill(o.slots(m.ex.probed), outs); err == nil {
		err = checkProbe(o, m.ex.probed, probeBatch)
	}
	if err != nil {
		for _, t := range outs {
			t.FinalizeAll()
		}
		return nil, fmt.Errorf("probe: %w", err)
	}
	flat := func(t *tensors.Tensor) []float32 {
		v := tensors.MustCopyFlatData[float32](t)
		t.FinalizeAll()
		return v
	}
	logits := flat(o.Logits)
	runner := tensors.MustCopyFlatData[int32](o.RunnerUp)
	o.RunnerUp.FinalizeAll()
	layers := map[string]LayerProbe{}
	for name, p := range o.Layers {
		layers[name] = LayerProbe{X: flat(p.X), Y: flat(p.Y), DY: flat(p.DY)}
	}
	probes := make([]Probe, len(contexts))
	for i := range probes {
		row := func(v []float32) []float32 { n := len(v) / probeBatch; return v[i*n : (i+1)*n] }
		p := Probe{Logits: row(logits), RunnerUp: runner[i], Layers: map[string]LayerProbe{}}
		for name, l := range layers {
			p.Layers[name] = LayerProbe{X: row(l.X), Y: row(l.Y), DY: row(l.DY)}
		}
		probes[i] = p
	}
	return probes, nil
}

// Probabilities turns logits into probabilities at a temperature (0 or less means 1).
func Probabilities(logits []float32, temperature float64) []float64 {
	if temperature <= 0 {
		temperature = 1
	}
	p := make([]float64, len(logits))
	hi := math.Inf(-1)
	for _, l := range logits {
		hi = math.Max(hi, float64(l))
	}
	var sum float64
	for i, l := range logits {
		p[i] = math.Exp((float64(l) - hi) / temperature)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// Sample draws a token from logits; temperature 0 is greedy.
func Sample(logits []float32, temperature float64, rng *rand.Rand) int32 {
	if temperature == 0 {
		best := 0
		for i, l := range logits {
			if l > logits[best] {
				best = i
			}
		}
		return int32(best)
	}
	p := Probabilities(logits, temperature)
	r := rng.Float64()
	for i, pi := range p {
		if r -= pi; r < 0 {
			return int32(i)
		}
	}
	return int32(len(p) - 1)
}

// window copies the last Ctx tokens of ctx into row i of tok [rows, Ctx] and returns the
// position of its last token.
func (m *Model) window(tok []int32, i int, ctx []int32) int32 {
	ctx = ctx[max(0, len(ctx)-m.Cfg.Ctx):]
	copy(tok[i*m.Cfg.Ctx:], ctx)
	return int32(len(ctx) - 1)
}

// Generate continues a prompt by n tokens and returns the new tokens. Sampling needs only
// the logits, so it runs the forward pass alone, one row at a time.
func (m *Model) Generate(prompt []int32, n int, temperature float64, seed uint64) ([]int32, error) {
	gen, _, err := m.generate(prompt, n, temperature, seed, false, nil)
	return gen, err
}

// GenerateProbed is Generate that also returns, per new token, the model read where it was
// sampled, which is where Probe reads that token's context: the logits and every layer's
// input X, the same values as Probe's (the same forward pass), without Y, DY or RunnerUp
// (−1), which need the probe's backward pass or its target. each, if not nil, is called on
// the generating goroutine with every new token's index, id and probe as soon as it is
// sampled, so that work on it can start while the next is generated.
func (m *Model) GenerateProbed(prompt []int32, n int, temperature float64, seed uint64, each func(i int, tok int32, p Probe)) ([]int32, []Probe, error) {
	return m.generate(prompt, n, temperature, seed, true, each)
}

func (m *Model) generate(prompt []int32, n int, temperature float64, seed uint64, keep bool, each func(int, int32, Probe)) ([]int32, []Probe, error) {
	if len(prompt) == 0 {
		return nil, nil, errors.New("generate: empty prompt")
	}
	rng := rand.New(rand.NewPCG(seed, 0x6e6))
	seq := append([]int32{}, prompt...)
	tok := make([]int32, m.Cfg.Ctx)
	var probes []Probe
	for range n {
		pos := m.window(tok, 0, seq)
		m.mu.Lock()
		outs, err := m.ex.next.Exec(args(m.params,
			tensors.FromFlatDataAndDimensions(tok, 1, m.Cfg.Ctx),
			tensors.FromFlatDataAndDimensions([]int32{pos}, 1))...)
		m.mu.Unlock()
		if err != nil {
			return nil, nil, fmt.Errorf("generate: %w", err)
		}
		flat := make([][]float32, len(outs))
		for i, t := range outs {
			if keep || i == 0 {
				flat[i] = tensors.MustCopyFlatData[float32](t)
			}
			t.FinalizeAll()
		}
		seq = append(seq, Sample(flat[0], temperature, rng))
		if keep {
			p := Probe{Logits: flat[0], RunnerUp: -1, Layers: map[string]LayerProbe{}}
			for i, l := range m.ex.probed {
				p.Layers[l.Name] = LayerProbe{X: flat[1+i]}
			}
			probes = append(probes, p)
			if each != nil {
				each(len(probes)-1, seq[len(seq)-1], p)
			}
		}
	}
	return seq[len(prompt):], probes, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

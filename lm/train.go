package lm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Trainer owns the model being trained, its momentum buffers and the tokenised corpus.
type Trainer struct {
	*Model
	bufs     []*tensors.Tensor
	corpus   []int32
	trainLen int // tokens [0, trainLen) are trained on; the rest is held out
}

// HeldOutFrac is the share of the corpus, at its end, kept for evaluation.
const HeldOutFrac = 0.1

// NewTrainer starts a fresh run on text.
func NewTrainer(cfg Config, text string) (*Trainer, error) {
	tok, err := NewTokenizer(text)
	if err != nil {
		return nil, err
	}
	cfg.Vocab = tok.Size()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st := initState(cfg, paramSpecs(cfg))
	return newTrainer(cfg, tok, st, text)
}

// ResumeTrainer continues a run from a checkpoint.
func ResumeTrainer(ckpt []byte, text string) (*Trainer, error) {
	cfg, tok, st, err := decodeCheckpoint(ckpt)
	if err != nil {
		return nil, err
	}
	return newTrainer(cfg, tok, st, text)
}

func newTrainer(cfg Config, tok *Tokenizer, st *State, text string) (*Trainer, error) {
	corpus := tok.EncodeCorpus(text)
	trainLen := trainSplit(len(corpus))
	if trainLen < cfg.Ctx+2 || len(corpus)-trainLen < cfg.Ctx+1 {
		return nil, fmt.Errorf("corpus of %d characters is too short for context %d (need at least %d)",
			len(corpus), cfg.Ctx, int(float64(cfg.Ctx+2)/HeldOutFrac)+1)
	}
	ex, err := newExecs(cfg, cfg.CapturedTable())
	if err != nil {
		return nil, err
	}
	m := &Model{Cfg: cfg, Tok: tok, Step: st.Step, ex: ex, params: ex.toTensors(st.Params)}
	return &Trainer{Model: m, bufs: ex.toTensors(st.Bufs), corpus: corpus, trainLen: trainLen}, nil
}

// Batch is the training data of one step: rows of Ctx tokens, their next tokens and the
// corpus offset of each target.
type Batch struct {
	Tokens, Targets []int32
	Offsets         []int64
	Mask            []float32 // per-token loss weight; 1 unless a caller masks tokens out
}

// BatchAt is the batch of a step. It depends only on the seed and the step, so a resumed or
// repeated run sees exactly the same data.
func (t *Trainer) BatchAt(step int) Batch {
	c := t.Cfg
	rng := rand.New(rand.NewPCG(c.Seed, uint64(step)))
	n := StepInfo{Rows: c.Batch, Ctx: c.Ctx}.Tokens()
	b := Batch{make([]int32, n), make([]int32, n), make([]int64, n), make([]float32, n)}
	for r := range c.Batch {
		start := rng.IntN(t.trainLen - c.Ctx)
		for p := range c.Ctx {
			i := r*c.Ctx + p
			b.Tokens[i], b.Targets[i] = t.corpus[start+p], t.corpus[start+p+1]
			b.Offsets[i], b.Mask[i] = int64(start+p+1), 1
		}
	}
	return b
}

// TrainStep runs the next optimizer step on b and returns what it captured.
func (t *Trainer) TrainStep(b Batch) (*Step, error) {
	c, step := t.Cfg, t.Step+1
	lr := float32(t.ex.opt.Schedule.At(step))
	in := append(append([]*tensors.Tensor{}, t.params...), t.bufs...)
	outs, err := t.ex.train.Exec(args(in,
		tensors.FromFlatDataAndDimensions(b.Tokens, c.Batch, c.Ctx),
		tensors.FromFlatDataAndDimensions(b.Targets, c.Batch, c.Ctx),
		tensors.FromFlatDataAndDimensions(b.Mask, c.Batch, c.Ctx),
		tensors.FromScalar(lr))...)
	if err != nil {
		return nil, fmt.Errorf("train step %d: %w", step, err)
	}
	o := newTrainOutputs[*tensors.Tensor](len(t.ex.specs), t.ex.layers)
	info := StepInfo{Step: step, LR: lr, Rows: c.Batch, Ctx: c.Ctx}
	if err = fill(o.slots(t.ex.layers), outs); err == nil {
		err = checkCaptured(o, t.ex.layers, info.Tokens())
	}
	if err != nil {
		for _, x := range outs {
			x.FinalizeAll()
		}
		return nil, fmt.Errorf("train step %d: %w", step, err)
	}
	t.mu.Lock()
	for _, old := range in {
		old.FinalizeAll()
	}
	t.params, t.bufs, t.Step = o.Params, o.Bufs, step
	t.mu.Unlock()
	info.Loss, info.Clip = tensors.ToScalar[float32](o.Loss), tensors.ToScalar[float32](o.Clip)
	st := &Step{StepInfo: info, Offsets: b.Offsets, Targets: b.Targets, Layers: map[string]LayerStep{}}
	seen := map[*float32]bool{} // the buffers the step keeps, and those of the new parameters
	for _, t := range append(append([]*tensors.Tensor{}, o.Params...), o.Bufs...) {
		tensors.MustConstFlatData(t, func(f []float32) {
			if len(f) > 0 {
				seen[&f[0]] = true
			}
		})
	}
	for name, cp := range o.Captured {
		st.Layers[name] = LayerStep{Keys: st.hold(cp.Keys, seen), Grads: st.hold(cp.Grads, seen)}
	}
	return st, nil
}

// hold returns t's values without copying them (on the CPU backend they are the buffer the
// step computed) and keeps t until Release. Should the backend ever return one buffer for
// two outputs, or one the new parameters use, the values are copied and t is left to the
// garbage collector, so that Release never hands back a buffer still in use.
func (s *Step) hold(t *tensors.Tensor, seen map[*float32]bool) []float32 {
	var flat []float32
	tensors.MustConstFlatData(t, func(f []float32) { flat = f })
	if len(flat) == 0 || seen[&flat[0]] {
		return append([]float32(nil), flat...)
	}
	seen[&flat[0]] = true
	s.held = append(s.held, t)
	return flat
}

// Progress is reported after every step.
type Progress struct {
	Step, Steps  int
	Loss         float32
	EvalLoss     float64 // at checkpoints; NaN elsewhere
	TokensPerSec float64
}

// Train runs steps until step `until`, capturing each into mem and committing a checkpoint
// every CheckpointEvery steps, at the end, and when ctx is cancelled. A mem with a
// Room(tokens) method is asked before each step; when the step would not fit, Train
// commits what it has and returns Room's error. A step that the memory then refuses for want
// of room is undone (the trainer goes back to the state before it) and what was appended is
// committed, so the trainer's step is always the memory's last.
func (t *Trainer) Train(ctx context.Context, mem Memory, until int, progress func(Progress)) error {
	start, startStep, committed := time.Now(), t.Step, t.Step
	for t.Step < until {
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), t.commit(mem))
		}
		var before []byte // the state before this step, kept only when the disk is nearly full
		r, hasRoom := mem.(interface{ Room(tokens int) error })
		if hasRoom {
			n := t.Cfg.Batch * t.Cfg.Ctx
			// Nearly full: the store checks the room again when the step is appended, so
			// let its writer finish first (what it stores in between could tip the check),
			// and keep the state before the step, which a commit of the steps already
			// appended needs if the append is refused all the same.
			if r.Room(nearFull*n) != nil {
				if f, ok := mem.(interface{ Flush() error }); ok {
					if err := f.Flush(); err != nil {
						return err
					}
				}
				var err error
				if before, err = t.Checkpoint(); err != nil {
					return err
				}
			}
			if err := r.Room(n); err != nil && t.Step > committed {
				return errors.Join(err, t.commit(mem))
			} else if err != nil {
				return err
			}
		}
		st, err := t.TrainStep(t.BatchAt(t.Step + 1))
		if err != nil {
			return err
		}
		if err := mem.AppendStep(st); err != nil { // capture
			if before == nil || r.Room(t.Cfg.Batch*t.Cfg.Ctx) == nil { // refused for want of room only
				return err
			}
			if rerr := t.Restore(before); rerr != nil {
				return errors.Join(err, rerr)
			}
			if t.Step > committed {
				return errors.Join(err, mem.Commit(t.Step, before))
			}
			return err
		}
		p := Progress{Step: t.Step, Steps: until, Loss: st.Loss, EvalLoss: math.NaN(),
			TokensPerSec: float64((t.Step-startStep)*st.Tokens()) / time.Since(start).Seconds()}
		if t.Step%t.Cfg.CheckpointEvery == 0 || t.Step == until {
			if err := t.commit(mem); err != nil {
				return err
			}
			committed = t.Step
			if p.EvalLoss, err = t.EvalLoss(); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(p)
		}
	}
	return nil
}

// Replay trains from the current step to step until on the run's own batches (they depend
// only on the seed and the step, so this repeats the run exactly), without capturing:
// mask, if not nil, edits each batch before its step (a retraining without some tokens),
// and after, if not nil, gets what each step captured (and may keep it). It stops when ctx
// is done.
func (t *Trainer) Replay(ctx context.Context, until int, mask func(step int, b *Batch), after func(step int, b *Batch, st *Step)) error {
	for t.Step < until {
		if err := ctx.Err(); err != nil {
			return err
		}
		step := t.Step + 1
		b := t.BatchAt(step)
		if mask != nil {
			mask(step, &b)
		}
		st, err := t.TrainStep(b)
		if err != nil {
			return err
		}
		if after != nil {
			after(step, &b, st)
		} else {
			st.Release()
		}
	}
	return nil
}

// nearFull: with room for fewer steps than this, Train takes the careful path.
const nearFull = 4

func (t *Trainer) commit(mem Memory) error {
	ckpt, err := t.Checkpoint()
	if err != nil {
		return err
	}
	return mem.Commit(t.Step, ckpt)
}

// Checkpoint serialises the parameters, momentum buffers, config and tokenizer.
func (t *Trainer) Checkpoint() ([]byte, error) {
	t.mu.Lock()
	st := &State{Step: t.Step, Params: flatten(t.params), Bufs: flatten(t.bufs)}
	t.mu.Unlock()
	return encodeCheckpoint(t.Cfg, t.Tok, st)
}

func flatten(ts []*tensors.Tensor) [][]float32 {
	out := make([][]float32, len(ts))
	for i, t := range ts {
		out[i] = tensors.MustCopyFlatData[float32](t)
	}
	return out
}

// Initial returns the current weights of the captured layers: W_1 when called before step 1.
func (t *Trainer) Initial() map[string]Initial {
	vals := map[string][]float32{}
	for i, s := range t.ex.specs {
		vals[s.Name] = tensors.MustCopyFlatData[float32](t.params[i])
	}
	init := map[string]Initial{}
	for _, l := range t.ex.layers {
		init[l.Name] = Initial{W: vals[l.Name+".w"], B: vals[l.Name+".b"]}
	}
	return init
}

// HeldOut returns n evenly spaced held-out contexts with their next token, for verification.
func (t *Trainer) HeldOut(n int) (contexts [][]int32, targets []int32) {
	return heldOut(t.corpus, t.trainLen, t.Cfg.Ctx, n)
}

// HeldOut is Trainer.HeldOut for a tokenised corpus without a trainer.
func HeldOut(corpus []int32, ctx, n int) ([][]int32, []int32) {
	return heldOut(corpus, trainSplit(len(corpus)), ctx, n)
}

func trainSplit(n int) int { return int(float64(n) * (1 - HeldOutFrac)) }

func heldOut(corpus []int32, trainLen, ctx, n int) ([][]int32, []int32) {
	span := len(corpus) - trainLen - ctx - 1
	var contexts [][]int32
	var targets []int32
	for i := range n {
		s := trainLen + i*span/max(1, n)
		contexts = append(contexts, corpus[s:s+ctx])
		targets = append(targets, corpus[s+ctx])
	}
	return contexts, targets
}

// EvalLoss is the mean next-token loss over one batch of held-out windows.
func (t *Trainer) EvalLoss() (float64, error) { return t.evalLoss(t.corpus, t.trainLen) }

// EvalLoss is the held-out loss of a model on the corpus it was trained on.
func (m *Model) EvalLoss(text string) (float64, error) {
	corpus := m.Tok.EncodeCorpus(text)
	return m.evalLoss(corpus, trainSplit(len(corpus)))
}

// SplitLoss is the mean next-token loss over the whole held-out split of the corpus the model
// was trained on, in consecutive windows of Ctx characters (each position sees the window's
// earlier characters), and how many tokens it averaged: a steadier figure than EvalLoss's
// one batch, for comparing runs. Only whole batches of windows are used; a split shorter
// than one batch gives NaN and 0 tokens.
func (m *Model) SplitLoss(text string) (float64, int, error) {
	corpus := m.Tok.EncodeCorpus(text)
	return m.splitLoss(corpus, trainSplit(len(corpus)))
}

// SplitLoss is Model.SplitLoss on the trainer's own corpus.
func (t *Trainer) SplitLoss() (float64, int, error) { return t.splitLoss(t.corpus, t.trainLen) }

func (m *Model) splitLoss(corpus []int32, trainLen int) (float64, int, error) {
	c := m.Cfg
	per := c.Batch * c.Ctx
	batches := (len(corpus) - trainLen - 1) / per
	if batches <= 0 {
		return math.NaN(), 0, nil
	}
	var sum float64
	for b := range batches {
		s := trainLen + b*per
		l, err := m.batchLoss(corpus[s:s+per], corpus[s+1:s+per+1])
		if err != nil {
			return 0, 0, err
		}
		sum += l
	}
	return sum / float64(batches), batches * per, nil
}

// batchLoss is the mean loss of one [Batch, Ctx] batch of tokens and their targets.
func (m *Model) batchLoss(tok, tgt []int32) (float64, error) {
	c := m.Cfg
	m.mu.Lock()
	out, err := m.ex.loss.Exec1(args(m.params,
		tensors.FromFlatDataAndDimensions(tok, c.Batch, c.Ctx),
		tensors.FromFlatDataAndDimensions(tgt, c.Batch, c.Ctx))...)
	m.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("eval loss: %w", err)
	}
	defer out.FinalizeAll()
	return float64(tensors.ToScalar[float32](out)), nil
}

func (m *Model) evalLoss(corpus []int32, trainLen int) (float64, error) {
	c := m.Cfg
	contexts, targets := heldOut(corpus, trainLen, c.Ctx, c.Batch)
	tok := make([]int32, 0, c.Batch*c.Ctx)
	tgt := make([]int32, 0, c.Batch*c.Ctx)
	for i, ctx := range contexts {
		tok = append(tok, ctx...)
		tgt = append(tgt, ctx[1:]...)
		tgt = append(tgt, targets[i])
	}
	return m.batchLoss(tok, tgt)
}

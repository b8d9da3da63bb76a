package datadir

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// TrainToken names one training token: the target at position Pos of batch row Row of
// optimizer step Step (as an attribution entry lists it).
type TrainToken struct {
	Step int `json:"step"`
	Row  int `json:"row"`
	Pos  int `json:"pos"`
}

// Retrained is what replaying training without some training tokens gave.
type Retrained struct {
	Step     int     // the step replayed to: the model that was asked about
	From     int     // the kept checkpoint the replay started from
	Replayed int     // optimizer steps replayed
	Removed  int     // training tokens whose loss was masked
	Prob     float64 // the target's probability after the retrain
	LogP     float64
	Seconds  float64
}

// ErrRetrainInput marks a retrain request that names something the run does not have
// (a step, row or position outside it, a text position outside the text).
var ErrRetrainInput = errors.New("invalid retrain request")

// CheckTokens validates training tokens against a run's config and its model's step.
func CheckTokens(cfg lm.Config, step int, remove []TrainToken) error {
	for i, t := range remove {
		if t.Step < 1 || t.Step > step || t.Row < 0 || t.Row >= cfg.Batch || t.Pos < 0 || t.Pos >= cfg.Ctx {
			return fmt.Errorf("%w: training token %d (step %d, row %d, pos %d) is outside steps 1..%d, rows 0..%d, positions 0..%d",
				ErrRetrainInput, i, t.Step, t.Row, t.Pos, step, cfg.Batch-1, cfg.Ctx-1)
		}
	}
	return nil
}

// Target encodes text with tok and returns the context and target of position (the
// character text[position] after text[:position]).
func Target(tok *lm.Tokenizer, text string, position int) ([]int32, int32, error) {
	ids, err := tok.Encode(text)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrRetrainInput, err)
	}
	if position < 1 || position >= len(ids) {
		return nil, 0, fmt.Errorf("%w: position %d outside 1..%d of the text", ErrRetrainInput, position, len(ids)-1)
	}
	return ids[:position], ids[position], nil
}

// Retrain answers "what would the model at step have said about text[position] had it
// never trained on these tokens?" by doing it: it restores the nearest kept checkpoint
// before the earliest removed token, replays every step to step with the same batches
// but those tokens' loss masked out, on a trainer of its own (never the serving model),
// and probes the result. With nothing removed it replays from the kept checkpoint before
// step, unchanged, which must give the model's own probability exactly. progress (may be nil) is called after each
// replayed step; cancelling ctx stops the replay.
func (d *Dir) Retrain(ctx context.Context, step int, text string, position int, remove []TrainToken,
	progress func(done, total int)) (*Retrained, error) {
	start := time.Now()
	if step < 0 || step > d.Steps() {
		return nil, fmt.Errorf("%w: step %d is not committed (0..%d)", ErrRetrainInput, step, d.Steps())
	}
	if err := CheckTokens(d.Cfg, step, remove); err != nil {
		return nil, err
	}
	first := step - 1
	byStep := map[int][]int{}
	for _, t := range remove {
		first = min(first, t.Step-1)
		byStep[t.Step] = append(byStep[t.Step], t.Row*d.Cfg.Ctx+t.Pos)
	}
	tr, err := d.trainerAt(first)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	contexts, target, err := Target(tr.Tok, text, position)
	if err != nil {
		return nil, err
	}
	r := &Retrained{Step: step, From: tr.Step, Replayed: step - tr.Step, Removed: len(remove)}
	err = tr.Replay(ctx, step, func(s int, b *lm.Batch) {
		for _, i := range byStep[s] {
			b.Mask[i] = 0
		}
	}, func(s int, _ *lm.Batch, _ *lm.Step) {
		if progress != nil {
			progress(s-r.From, r.Replayed)
		}
	})
	if err != nil {
		return nil, err
	}
	ps, err := tr.Probe([][]int32{contexts}, []int32{target})
	if err != nil {
		return nil, err
	}
	r.Prob = lm.Probabilities(ps[0].Logits, 1)[target]
	r.LogP, r.Seconds = math.Log(r.Prob), time.Since(start).Seconds()
	return r, nil
}

// trainerAt is a trainer restored to the nearest kept checkpoint at or before step.
func (d *Dir) trainerAt(step int) (*lm.Trainer, error) {
	_, ckpt, err := d.keptCheckpoint(step)
	if err != nil {
		return nil, err
	}
	return lm.ResumeTrainer(ckpt, string(d.Corpus()))
}

// keptCheckpoint is the nearest kept checkpoint at or before step and its step. A data
// directory written before checkpoints were kept has only its last one; its step 0 is
// rebuilt from the config, as the run began (initialisation depends only on the seed).
func (d *Dir) keptCheckpoint(step int) (int, []byte, error) {
	at, ckpt, err := d.Store.CheckpointAt(step)
	if !errors.Is(err, dualmem.ErrNotFound) {
		return at, ckpt, err
	}
	tr, err := lm.NewTrainer(d.Cfg, string(d.Corpus()))
	if err != nil {
		return 0, nil, fmt.Errorf("rebuilding the step-0 checkpoint: %w", err)
	}
	defer tr.Close()
	if ckpt, err = tr.Checkpoint(); err != nil {
		return 0, nil, fmt.Errorf("rebuilding the step-0 checkpoint: %w", err)
	}
	return 0, ckpt, nil
}

// Predict is the memory's answer to the same question: the target's probability under the
// final weights minus those tokens' updates, the rest of training unchanged (the `out`
// layer's dual form; no retraining). It needs the `out` layer in memory.
func (sn *Snapshot) Predict(text string, position int, remove []TrainToken) (float64, error) {
	sc := sn.Engine.Scanner(lm.OutLayer)
	if sc == nil {
		return 0, fmt.Errorf("%w: the %q layer has no memory: the prediction needs it", ErrRetrainInput, lm.OutLayer)
	}
	if err := CheckTokens(sn.Model.Cfg, sn.Step, remove); err != nil {
		return 0, err
	}
	contexts, target, err := Target(sn.Model.Tok, text, position)
	if err != nil {
		return 0, err
	}
	ps, err := sn.Model.Probe([][]int32{contexts}, []int32{target})
	if err != nil {
		return 0, err
	}
	// Memory tokens are step-major, then row, then position.
	starts := make([]int, len(sc.Mem.Steps)+1)
	for k, si := range sc.Mem.Steps {
		starts[k+1] = starts[k] + si.Tokens()
	}
	hits := make([]dualmem.Hit, 0, len(remove))
	seen := map[int]bool{}
	for _, t := range remove {
		j := starts[t.Step-1] + t.Row*sc.Mem.Steps[t.Step-1].Ctx + t.Pos
		if !seen[j] {
			seen[j] = true
			hits = append(hits, dualmem.Hit{Index: j})
		}
	}
	q := dualmem.Query{X: ps[0].Layers[lm.OutLayer].X, Token: int(target)}
	return sc.Counterfactual(ps[0].Logits, q, hits), nil
}

// Question is what a counterfactual asks about the token at Position of Text: its
// probability without the top TopK training tokens of its `out` attribution ranked by
// RankBy (the attribution's default when empty), or without Tokens.
type Question struct {
	Text     string
	Position int
	TopK     int
	RankBy   string
	Tokens   []TrainToken
}

// Prediction is the memory's answer to a Question on one snapshot.
type Prediction struct {
	Step    int          // the snapshot's step
	Token   string       // the character at Position
	Removed []TrainToken // the training tokens removed
	Prob    float64      // the model's probability of the token
	// Predicted is the probability under the final weights minus the removed tokens'
	// updates, the rest of training unchanged.
	Predicted float64
}

// Counterfactual answers q from the memory: which training tokens it removes and what it
// predicts without them. Exactly one of TopK and Tokens must be set.
func (sn *Snapshot) Counterfactual(ctx context.Context, q Question) (*Prediction, error) {
	if (q.TopK > 0) == (len(q.Tokens) > 0) || q.TopK < 0 {
		return nil, fmt.Errorf("%w: say what to remove: a top k or training tokens, not both and not neither", ErrRetrainInput)
	}
	contexts, target, err := Target(sn.Model.Tok, q.Text, q.Position)
	if err != nil {
		return nil, err
	}
	ps, err := sn.Model.Probe([][]int32{contexts}, []int32{target})
	if err != nil {
		return nil, err
	}
	p := &Prediction{Step: sn.Step, Token: sn.Model.Tok.DecodeOne(target), Removed: q.Tokens,
		Prob: lm.Probabilities(ps[0].Logits, 1)[target]}
	if q.TopK == 0 {
		p.Predicted, err = sn.Predict(q.Text, q.Position, q.Tokens)
		return p, err
	}
	ar := query.DefaultAttribute()
	ar.Text, ar.TopK, ar.Layers, ar.Passages = q.Text, q.TopK, []string{lm.OutLayer}, 1
	if q.RankBy != "" {
		ar.RankBy = q.RankBy
	}
	ans, err := sn.Engine.AttributeAt(ctx, ar, []int{q.Position})
	if err != nil {
		return nil, err
	}
	la := ans.Tokens[0].Layers[lm.OutLayer]
	if len(la.Top) == 0 || la.CounterfactualProb == nil {
		return nil, fmt.Errorf("%w: the attribution found no training tokens to remove", ErrRetrainInput)
	}
	p.Removed = []TrainToken{}
	for _, e := range la.Top {
		p.Removed = append(p.Removed, TrainToken{Step: e.Step, Row: e.Row, Pos: e.Pos})
	}
	p.Predicted = *la.CounterfactualProb
	return p, nil
}

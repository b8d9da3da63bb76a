package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/spotlight-lm/spotlight/lm"
)

// LDSOptions configure one linear-datamodeling-score run.
type LDSOptions struct {
	Corpus      string
	Config      lm.Config // every layer of the table is captured
	Subsets     int       // M random drops, each retrained (default 100)
	Drop        float64   // share of the training units each subset drops (default 0.01)
	Queries     int       // Q held-out query tokens (default 50)
	Checkpoints int       // TracIn-CP checkpoints, evenly spaced, the last one final (default 4)
	CrossSeed   bool      // retrain with Seed+1; subsets then drop corpus offsets
	Seed        uint64    // draws of the subsets and the random score
	Workers     int       // retrains run at once, each on its own trainer (default 1)
	Bootstrap   int       // resamples of the queries for the 95% interval (default 2000)
	Singles     int       // extra retrains that each drop one random unit: the chaos probe
	Influence   bool      // also score by the exact influence through the whole run (lm.Trainer.Influence; costly)
	// SkipAllParams leaves out grad-dot and TracIn-CP over all parameters, which cost 6–8×
	// their linear-layer versions.
	SkipAllParams bool
	// NoiseOnly scores no method: the run, its held-out losses, the retrains and the noise
	// floor, for comparing training regimes.
	NoiseOnly bool
	Log       func(format string, args ...any)
}

// LDSReport is the `spotlight eval lds --json` document.
type LDSReport struct {
	Queries    int     `json:"queries"`
	Subsets    int     `json:"subsets"`
	Drop       float64 `json:"drop"`
	Unit       string  `json:"unit"`        // what a subset drops: "token" occurrences or corpus "offset"s
	CrossSeed  bool    `json:"cross_seed"`  // retrains ran under another seed than the predictions
	NoiseFloor Num     `json:"noise_floor"` // mean over queries of the std across subsets of the real Δloss (nats)
	// MeanAbsDLoss is the mean over queries and subsets of |real Δloss| (nats).
	MeanAbsDLoss Num `json:"mean_abs_dloss"`
	// SingleDLoss is the mean over queries of the RMS Δloss of retrains that drop one random
	// unit each. In a regime where the loss responds linearly to the data it is about
	// noise_floor/√(units dropped per subset); where training is chaotic it approaches it.
	SingleDLoss Num `json:"single_dloss"`
	QueryLoss   Num `json:"query_loss"`    // mean loss of the queries under the model the retrains change
	HeldOutLoss Num `json:"held_out_loss"` // mean next-token loss over held-out windows' last tokens
	// SplitLoss is the mean loss over every token of the held-out split (lm's SplitLoss),
	// the steadier figure for comparing regimes.
	SplitLoss Num `json:"held_out_split_loss"`
	// ReproduceMaxAbsDLoss is the largest |Δloss| of a rerun with nothing dropped (0: exact).
	ReproduceMaxAbsDLoss Num            `json:"reproduce_max_abs_dloss"`
	Methods              []MethodResult `json:"methods"`
	Config               lm.Config      `json:"config"`
	TrainSeconds         float64        `json:"train_seconds"`
	RetrainSeconds       float64        `json:"retrain_seconds"`
}

// MethodResult is one attribution method's LDS: the mean over queries of the Spearman
// correlation across subsets between its predicted and the real Δloss, with a 95% bootstrap
// interval over queries.
type MethodResult struct {
	Name    string  `json:"name"`
	Layers  string  `json:"layers"`
	LDS     Num     `json:"lds"`
	CI      [2]Num  `json:"ci"`
	Seconds float64 `json:"seconds"` // scoring time, plus the gradient passes it alone needs
}

func (o *LDSOptions) defaults() {
	if o.Subsets == 0 {
		o.Subsets = 100
	}
	if o.Drop == 0 {
		o.Drop = 0.01
	}
	if o.Queries == 0 {
		o.Queries = 50
	}
	if o.Checkpoints == 0 {
		o.Checkpoints = 4
	}
	if o.Bootstrap == 0 {
		o.Bootstrap = 2000
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
}

func (o *LDSOptions) validate() error {
	switch {
	case o.Subsets < 3:
		return errors.New("lds: --subsets must be at least 3 (a Spearman correlation across subsets)")
	case !(o.Drop > 0 && o.Drop < 1):
		return fmt.Errorf("lds: --drop must be in (0, 1), not %v", o.Drop)
	case o.Queries < 2:
		return errors.New("lds: --queries must be at least 2 (a bootstrap over queries)")
	case o.Checkpoints < 1:
		return errors.New("lds: --checkpoints must be positive")
	case o.Singles < 0:
		return errors.New("lds: --singles must be non-negative")
	case o.Bootstrap < 100:
		return errors.New("lds: --bootstrap must be at least 100")
	case o.NoiseOnly && o.Influence:
		return errors.New("lds: --noise-only scores no method; leave out --influence")
	}
	return nil
}

// run is one training run's trainer with its in-memory checkpoints.
type run struct {
	tr    *lm.Trainer
	snaps map[int][]byte
	infos []lm.StepInfo
}

// RunLDS trains the model, scores every training token for every query with every method,
// retrains once per subset with that subset's tokens loss-masked (same seed, same batches),
// and reports each method's LDS.
func RunLDS(ctx context.Context, opts LDSOptions) (*LDSReport, error) {
	opts.defaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	cfg := opts.Config
	cfg.Layers = nil
	cfg.CheckpointEvery = max(1, (cfg.Steps+opts.Checkpoints-1)/opts.Checkpoints)
	start := time.Now()
	base, err := trainRun(ctx, cfg, opts.Corpus)
	if err != nil {
		return nil, err
	}
	defer base.tr.Close()
	cfg = base.tr.Cfg
	rep := &LDSReport{Queries: opts.Queries, Subsets: opts.Subsets, Drop: opts.Drop, Unit: "token",
		CrossSeed: opts.CrossSeed, Config: cfg, TrainSeconds: time.Since(start).Seconds()}
	if opts.CrossSeed {
		rep.Unit = "offset"
	}
	contexts, targets := base.tr.HeldOut(opts.Queries)
	held, err := heldOutLoss(base.tr)
	if err != nil {
		return nil, err
	}
	split, _, err := base.tr.SplitLoss()
	if err != nil {
		return nil, err
	}
	rep.HeldOutLoss, rep.SplitLoss = Num(held), Num(split)
	opts.Log("trained %d steps in %.0fs; held-out loss %.4f, over the whole held-out split %.4f", cfg.Steps, rep.TrainSeconds, held, split)

	perStep := cfg.Batch * cfg.Ctx
	units := cfg.Steps * perStep
	if opts.CrossSeed { // target offsets of training windows lie below the held-out split
		units = int(float64(len(base.tr.Tok.EncodeCorpus(opts.Corpus))) * (1 - lm.HeldOutFrac))
	}
	subs := drawSubsets(units, opts.Subsets, opts.Drop, opts.Seed)
	if !opts.CrossSeed {
		subs.steps = make([]int, opts.Subsets)
		for m, d := range subs.drops {
			subs.steps[m] = cfg.Steps + 1
			if len(d) > 0 {
				subs.steps[m] = int(d[0])/perStep + 1
			}
		}
	}
	unitOf := func(step, i int, b *lm.Batch) int {
		if opts.CrossSeed {
			return int(b.Offsets[i])
		}
		return (step-1)*perStep + i
	}

	var methods []*method
	rep.ReproduceMaxAbsDLoss = Num(math.NaN())
	if !opts.NoiseOnly {
		if methods, err = scoreAll(ctx, base, opts, contexts, targets, subs, unitOf, rep); err != nil {
			return nil, err
		}
	}

	// The retrains: under the same seed they continue the base run; under another seed they
	// start from that seed's own run, whose undropped loss is the reference.
	rstart := time.Now()
	ref := base
	if opts.CrossSeed {
		c2 := cfg
		c2.Seed++
		if ref, err = trainRun(ctx, c2, opts.Corpus); err != nil {
			return nil, err
		}
		defer ref.tr.Close()
	}
	refLoss, err := queryLoss(ref.tr, contexts, targets)
	if err != nil {
		return nil, err
	}
	real, err := retrainAll(ctx, ref, opts, subs, unitOf, contexts, targets)
	if err != nil {
		return nil, err
	}
	rep.SingleDLoss = Num(math.NaN())
	if opts.Singles > 0 {
		one := singleSubsets(units, opts.Singles, opts.Seed, perStep, opts.CrossSeed)
		got, err := retrainAll(ctx, ref, opts, one, unitOf, contexts, targets)
		if err != nil {
			return nil, err
		}
		var s float64
		for q := range opts.Queries {
			var sq float64
			for m := range opts.Singles {
				d := got[m*opts.Queries+q] - refLoss[q]
				sq += d * d
			}
			s += math.Sqrt(sq/float64(opts.Singles)) / float64(opts.Queries)
		}
		rep.SingleDLoss = Num(s)
	}
	rep.RetrainSeconds = time.Since(rstart).Seconds()
	Q, M := opts.Queries, opts.Subsets
	for m := range M {
		for q := range Q {
			real[m*Q+q] -= refLoss[q]
		}
	}
	var ql float64
	for _, l := range refLoss {
		ql += l / float64(Q)
	}
	rep.QueryLoss = Num(ql)
	rep.NoiseFloor, rep.MeanAbsDLoss = noiseFloor(real, M, Q)
	rep.Methods = []MethodResult{} // [] rather than null under --noise-only
	for _, m := range methods {
		lds, lo, hi := ldsScore(m.pred, real, M, Q, opts.Bootstrap, opts.Seed)
		rep.Methods = append(rep.Methods, MethodResult{Name: m.name, Layers: m.layers, LDS: Num(lds),
			CI: [2]Num{Num(lo), Num(hi)}, Seconds: m.seconds})
	}
	return rep, nil
}

// trainRun trains cfg from its seed, keeping a checkpoint every CheckpointEvery steps (and
// before step 1 and after the last) in memory.
func trainRun(ctx context.Context, cfg lm.Config, text string) (*run, error) {
	tr, err := lm.NewTrainer(cfg, text)
	if err != nil {
		return nil, err
	}
	r := &run{tr: tr, snaps: map[int][]byte{}}
	snap := func() error {
		ck, err := tr.Checkpoint()
		r.snaps[tr.Step] = ck
		return err
	}
	if err := snap(); err != nil {
		tr.Close()
		return nil, err
	}
	for tr.Step < tr.Cfg.Steps {
		if err := ctx.Err(); err != nil {
			tr.Close()
			return nil, err
		}
		st, err := tr.TrainStep(tr.BatchAt(tr.Step + 1))
		if err == nil && (tr.Step%tr.Cfg.CheckpointEvery == 0 || tr.Step == tr.Cfg.Steps) {
			err = snap()
		}
		if err != nil {
			tr.Close()
			return nil, err
		}
		r.infos = append(r.infos, st.StepInfo)
	}
	return r, nil
}

// heldOutLoss is the mean −log p of the next token after 512 evenly spaced held-out windows.
func heldOutLoss(tr *lm.Trainer) (float64, error) {
	cs, ts := tr.HeldOut(512)
	ls, err := queryLoss(tr, cs, ts)
	if err != nil {
		return 0, err
	}
	var s float64
	for _, l := range ls {
		s += l
	}
	return s / float64(len(ls)), nil
}

// queryLoss is −log p(target) after each context under the trainer's current weights.
func queryLoss(m *lm.Trainer, contexts [][]int32, targets []int32) ([]float64, error) {
	ps, err := m.Probe(contexts, targets)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = -logProb(p.Logits, targets[i])
	}
	return out, nil
}

// replay restores r's trainer to the snapshot before step `from` (or before step 1) and
// trains to the end; mask, if not nil, is called on each batch before its step, and feed
// on what each step captured.
func replay(ctx context.Context, tr *lm.Trainer, snaps map[int][]byte, from int, mask func(step int, b *lm.Batch),
	feed func(step int, b *lm.Batch, st *lm.Step)) error {
	at := 0
	for s := range snaps {
		if s < from && s > at {
			at = s
		}
	}
	if err := tr.Restore(snaps[at]); err != nil {
		return err
	}
	return tr.Replay(ctx, tr.Cfg.Steps, mask, feed)
}

// retrainAll retrains once per subset and returns the query losses, [M][Q] flat.
func retrainAll(ctx context.Context, ref *run, opts LDSOptions, subs *subsets, unitOf func(int, int, *lm.Batch) int,
	contexts [][]int32, targets []int32) ([]float64, error) {
	M, Q := subs.M, opts.Queries
	out := make([]float64, M*Q)
	trainers := []*lm.Trainer{ref.tr}
	text := opts.Corpus
	for len(trainers) < opts.Workers {
		t, err := lm.ResumeTrainer(ref.snaps[0], text)
		if err != nil {
			return nil, err
		}
		defer t.Close()
		trainers = append(trainers, t)
	}
	start := time.Now()
	var (
		mu   sync.Mutex
		done int
		wg   sync.WaitGroup
		next = make(chan int)
		errs = make(chan error, len(trainers))
	)
	go func() {
		defer close(next)
		for m := range M {
			select {
			case next <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	for _, t := range trainers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range next {
				dropped := 0
				err := replay(ctx, t, ref.snaps, subs.first(m), func(step int, b *lm.Batch) {
					for i := range b.Mask {
						if subs.has(m, unitOf(step, i, b)) {
							b.Mask[i] = 0
							dropped++
						}
					}
				}, nil)
				var ls []float64
				if err == nil {
					ls, err = queryLoss(t, contexts, targets)
				}
				if err != nil {
					errs <- err
					for range next { // drain
					}
					return
				}
				copy(out[m*Q:], ls)
				mu.Lock()
				done++
				opts.Log("retrain %d/%d: %d tokens dropped (%.0fs)", done, M, dropped, time.Since(start).Seconds())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// noiseFloor is how much dropping a random subset moves the query loss: the mean over
// queries of its std across subsets, and the mean |Δloss|.
func noiseFloor(real []float64, M, Q int) (std, meanAbs Num) {
	var s, a float64
	for q := range Q {
		var mean, sq float64
		for m := range M {
			mean += real[m*Q+q] / float64(M)
			a += math.Abs(real[m*Q+q]) / float64(M*Q)
		}
		for m := range M {
			d := real[m*Q+q] - mean
			sq += d * d
		}
		s += math.Sqrt(sq/float64(M-1)) / float64(Q)
	}
	return Num(s), Num(a)
}

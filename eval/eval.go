// Package eval measures whether Spotlight's attributions are faithful: planted facts
// (canaries) must be traced back to where they were planted, and the memory's counterfactual
// ("without these training tokens the prediction would move by this much") must agree with
// actually retraining without them.
package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// Options configure one evaluation run.
type Options struct {
	Data          string    // data directory to create for the run (must not hold a model)
	Corpus        string    // base corpus; canaries are planted into it
	Config        lm.Config // the run's config; Layers is set to out (the exact layer)
	Canaries      int       // K planted facts (0 skips the canary experiment)
	Reps          int       // occurrences of each fact
	Queries       int       // M held-out query tokens for the retrain experiment (0 skips it)
	RecallKs      []int     // k of recall@k (default 1, 10)
	RetrainKs     []int     // k of the retrain experiment (default 1, 10, 100)
	Seed          uint64    // canary planting and random baselines
	SnapshotEvery int       // steps between in-memory checkpoints retrains start from (default 25)
	Workers       int       // retrains run at once, each on its own trainer (default 1)
	Log           func(format string, args ...any)
	Progress      func(lm.Progress) // training progress of the original run
}

// Report is the result; its JSON is the documented `spotlight eval --json` document.
type Report struct {
	Canaries             CanaryReport  `json:"canaries"`
	Retrain              RetrainReport `json:"retrain"`
	ReproduceMaxAbsDLogp Num           `json:"reproduce_max_abs_dlogp"`
	Detail               Detail        `json:"-"`
}

// CanaryReport holds recall@k per view (grouping/ranking, e.g. "pattern/contribution") and k,
// over every code character and split by whether the model predicts it (p > 0.5).
type CanaryReport struct {
	Recall      map[string]map[string]Num `json:"recall"`
	Predicted   map[string]map[string]Num `json:"predicted"`   // code characters the model gives p > 0.5
	Unpredicted map[string]map[string]Num `json:"unpredicted"` // the others
	Chars       map[string]int            `json:"chars"`       // how many code characters: all, predicted, unpredicted
	Default     DefaultView               `json:"default"`     // the view an answer leads with, and its recall
}

// DefaultView is the recall of the view answers use by default.
type DefaultView struct {
	Name string `json:"name"`
	R1   Num    `json:"1"`
	R10  Num    `json:"10"`
}

// RetrainReport holds the correlations per k.
type RetrainReport struct {
	K map[string]RetrainK `json:"k"`
}

// RetrainK compares the memory's predicted Δlog p with the retrained one across queries.
type RetrainK struct {
	Spearman       Num `json:"spearman"`
	Pearson        Num `json:"pearson"`
	RandomSpearman Num `json:"random_spearman"`
}

// Detail is what the table shows beyond the JSON document.
type Detail struct {
	Facts          []Fact
	MemoryTokens   int
	CodeTrained    float64 // share of the facts' code characters that some training token had as its target
	FinalLoss      float64
	DualMaxAbsErr  float64 // |memory logit − model logit| over every scanned query
	RandomPearson  map[int]float64
	Queries        []QueryResult
	Retrains       int
	TrainSeconds   float64
	RetrainSeconds float64
}

// QueryResult is one retrain experiment's query token at one k.
type QueryResult struct {
	Query, K                    int
	Context, Target             string
	LogP                        float64 // original log p(target)
	Predicted, Real             float64 // Δlog p: the engine's counterfactual vs retrain, top-k by contribution
	RandomPredicted, RandomReal float64 // the same for k random training tokens
}

func (o *Options) defaults() {
	if len(o.RecallKs) == 0 {
		o.RecallKs = []int{1, 10}
	}
	if len(o.RetrainKs) == 0 {
		o.RetrainKs = []int{1, 10, 100}
	}
	if o.Reps <= 0 {
		o.Reps = 6
	}
	if o.SnapshotEvery <= 0 {
		o.SnapshotEvery = 25
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
}

// snapMemory forwards to the store and keeps every checkpoint in RAM for retrains.
type snapMemory struct {
	lm.Memory
	snaps map[int][]byte
}

func (s *snapMemory) Commit(step int, ckpt []byte) error {
	s.snaps[step] = ckpt
	return s.Memory.Commit(step, ckpt)
}

// Run plants the canaries, trains the model into opts.Data, and runs both experiments.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	if opts.Canaries < 0 || opts.Queries < 0 {
		return nil, errors.New("eval: canaries and queries must be non-negative")
	}
	text := opts.Corpus
	var facts []Fact
	if opts.Canaries > 0 {
		var err error
		if text, facts, err = PlantCanaries(opts.Corpus, opts.Canaries, opts.Reps, opts.Seed); err != nil {
			return nil, err
		}
	}
	cfg := opts.Config
	cfg.Layers = []string{lm.OutLayer}
	cfg.CheckpointEvery = opts.SnapshotEvery
	dir, tr, err := datadir.Create(opts.Data, cfg, []byte(text))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	defer tr.Close()
	cfg = tr.Cfg
	ckpt0, err := tr.Checkpoint()
	if err != nil {
		return nil, err
	}
	mem := &snapMemory{Memory: dir.Store, snaps: map[int][]byte{0: ckpt0}}
	start := time.Now()
	var last lm.Progress
	err = tr.Train(ctx, mem, cfg.Steps, func(p lm.Progress) {
		last = p
		if opts.Progress != nil {
			opts.Progress(p)
		}
	})
	if err != nil {
		return nil, err
	}
	rep := &Report{Detail: Detail{Facts: facts, FinalLoss: last.EvalLoss, TrainSeconds: time.Since(start).Seconds(),
		RandomPearson: map[int]float64{}}}
	rep.Retrain.K = map[string]RetrainK{}
	opts.Log("trained %d steps in %.0fs, eval loss %.3f", cfg.Steps, rep.Detail.TrainSeconds, last.EvalLoss)
	// The engine reads the trainer's model: every attribution is made before any retrain
	// moves its weights, and the final weights are restored at the end.
	eng, err := query.NewEngine(tr.Model, dir.Store, nil)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	sc := eng.Scanner(lm.OutLayer)
	if sc == nil || sc.N == 0 {
		return nil, errors.New("eval: the memory holds no training tokens")
	}
	rep.Detail.MemoryTokens = sc.N
	rng := rand.New(rand.NewPCG(opts.Seed, 0xe7a1))
	if len(facts) > 0 {
		if err := canaries(ctx, eng, tr, facts, opts, rng, rep); err != nil {
			return nil, err
		}
	}
	if opts.Queries > 0 {
		if err := retrain(ctx, eng, tr, text, mem.snaps, opts, rng, rep); err != nil {
			return nil, err
		}
	} else {
		rep.ReproduceMaxAbsDLogp = Num(math.NaN())
	}
	return rep, nil
}

// outRequest asks the engine to score text at the out layer only.
func outRequest(text string, k int, rankBy string) query.AttributeRequest {
	return query.AttributeRequest{Text: text, TopK: k, RankBy: rankBy, GroupBy: query.GroupToken, Layers: []string{lm.OutLayer}, Bins: 1}
}

func randomTokens(rng *rand.Rand, n, k int) []int {
	seen := map[int]bool{}
	out := make([]int, 0, k)
	for len(out) < min(k, n) {
		j := rng.IntN(n)
		if !seen[j] {
			seen[j] = true
			out = append(out, j)
		}
	}
	return out
}

func slicesMax(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// retrain compares the engine's counterfactual with real retraining, one retrain per query and
// k (masking the top-k of several queries in one run would mix their effects: each query's
// measured change would include what the other queries' tokens did to it).
func retrain(ctx context.Context, eng *query.Engine, tr *lm.Trainer, text string, snaps map[int][]byte, opts Options,
	rng *rand.Rand, rep *Report) error {
	T := tr.Step
	final := snaps[T]
	sc := eng.Scanner(lm.OutLayer)
	mem := sc.Mem
	contexts, targets := tr.HeldOut(opts.Queries)
	probes, err := tr.Probe(contexts, targets)
	if err != nil {
		return err
	}
	logp := make([]float64, len(probes))
	for q, p := range probes {
		logp[q] = logProb(p.Logits, targets[q])
	}
	maxK := slicesMax(opts.RetrainKs)

	// Phase 1: every prediction, while the trainer still holds the trained weights.
	type job struct {
		r           QueryResult
		top, random []int // memory indices to mask
	}
	var jobs []job
	for q, p := range probes {
		text := tr.Tok.Decode(contexts[q]) + tr.Tok.DecodeOne(targets[q])
		ans, err := eng.Attribute(ctx, outRequest(text, maxK, "contribution"))
		if err != nil {
			return err
		}
		last := ans.Tokens[len(ans.Tokens)-1]
		la := last.Layers[lm.OutLayer]
		rep.Detail.DualMaxAbsErr = math.Max(rep.Detail.DualMaxAbsErr, la.DualCheck.AbsErr)
		var top []int
		for _, e := range la.Top {
			top = append(top, e.Index)
		}
		qq := dualmem.Query{X: p.Layers[lm.OutLayer].X, Token: int(targets[q])}
		lp0 := math.Log(last.Prob)
		for _, k := range opts.RetrainKs {
			r := QueryResult{Query: q, K: k, Context: tr.Tok.Decode(contexts[q]), Target: last.Token, LogP: logp[q]}
			sel := top[:min(k, len(top))]
			cf := sc.Counterfactual(p.Logits, qq, hits(sel))
			if k == maxK && la.CounterfactualProb != nil {
				cf = *la.CounterfactualProb // the engine's own number for its top-k
			}
			r.Predicted = math.Log(cf) - lp0
			rnd := randomTokens(rng, len(mem.Step), k)
			r.RandomPredicted = math.Log(sc.Counterfactual(p.Logits, qq, hits(rnd))) - lp0
			jobs = append(jobs, job{r: r, top: sel, random: rnd})
		}
	}

	start := time.Now()
	// run retrains from the latest snapshot before the first masked step and returns log p of
	// the query targets afterwards.
	var retrains atomic.Int64
	run := func(tr *lm.Trainer, masked []int, qs []int) ([]float64, error) {
		first := T + 1
		byStep := map[int][]int{}
		for _, j := range masked {
			st := int(mem.Step[j])
			first = min(first, st)
			byStep[st] = append(byStep[st], int(mem.Rows[j])*tr.Cfg.Ctx+int(mem.Pos[j]))
		}
		from := 0
		for s := range snaps {
			if s < first && s > from {
				from = s
			}
		}
		if len(masked) == 0 {
			from = 0 // the reproduction check replays the whole run
		}
		if err := tr.Restore(snaps[from]); err != nil {
			return nil, err
		}
		err := tr.Replay(ctx, T, func(step int, b *lm.Batch) {
			for _, i := range byStep[step] {
				b.Mask[i] = 0
			}
		}, nil)
		if err != nil {
			return nil, err
		}
		retrains.Add(1)
		cs, ts := make([][]int32, len(qs)), make([]int32, len(qs))
		for i, q := range qs {
			cs[i], ts[i] = contexts[q], targets[q]
		}
		ps, err := tr.Probe(cs, ts)
		if err != nil {
			return nil, err
		}
		out := make([]float64, len(qs))
		for i, p := range ps {
			out[i] = logProb(p.Logits, ts[i])
		}
		return out, nil
	}
	all := make([]int, len(probes))
	for q := range all {
		all[q] = q
	}
	again, err := run(tr, nil, all)
	if err != nil {
		return err
	}
	var repro float64
	for q := range again {
		repro = math.Max(repro, math.Abs(again[q]-logp[q]))
	}
	rep.ReproduceMaxAbsDLogp = Num(repro)
	opts.Log("reproduction: retrain with nothing masked, max |Δlog p| = %.3g over %d queries", repro, len(all))

	// Phase 2: the retrains.
	type series struct{ pred, real, rpred, rreal []float64 }
	per := map[int]*series{}
	for _, k := range opts.RetrainKs {
		per[k] = &series{}
	}
	// Retrains run on opts.Workers trainers at once (each its own compiled graphs, restored
	// from the snapshots); every retrain is still one (query, k, top-k or random) alone.
	trainers := []*lm.Trainer{tr}
	for len(trainers) < max(1, opts.Workers) {
		t, err := lm.ResumeTrainer(snaps[0], text)
		if err != nil {
			return err
		}
		defer t.Close()
		trainers = append(trainers, t)
	}
	var (
		mu   sync.Mutex
		done int
		next = make(chan int)
		errs = make(chan error, len(trainers))
	)
	go func() {
		defer close(next)
		for i := range jobs {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for _, t := range trainers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r := &jobs[i].r
				got, err := run(t, jobs[i].top, []int{r.Query})
				if err == nil {
					r.Real = got[0] - logp[r.Query]
					got, err = run(t, jobs[i].random, []int{r.Query})
				}
				if err != nil {
					errs <- err
					for range next { // drain
					}
					return
				}
				r.RandomReal = got[0] - logp[r.Query]
				mu.Lock()
				done++
				opts.Log("query %d/%d k=%d: predicted %+.4g real %+.4g; random predicted %+.4g real %+.4g (%d/%d, %.0fs)",
					r.Query+1, len(probes), r.K, r.Predicted, r.Real, r.RandomPredicted, r.RandomReal, done, len(jobs), time.Since(start).Seconds())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rep.Detail.Retrains = int(retrains.Load())
	for i := range jobs {
		r := jobs[i].r
		sr := per[r.K]
		sr.pred, sr.real = append(sr.pred, r.Predicted), append(sr.real, r.Real)
		sr.rpred, sr.rreal = append(sr.rpred, r.RandomPredicted), append(sr.rreal, r.RandomReal)
		rep.Detail.Queries = append(rep.Detail.Queries, r)
	}
	for _, k := range opts.RetrainKs {
		sr := per[k]
		rep.Retrain.K[strconv.Itoa(k)] = RetrainK{Spearman: Num(Spearman(sr.pred, sr.real)),
			Pearson: Num(Pearson(sr.pred, sr.real)), RandomSpearman: Num(Spearman(sr.rpred, sr.rreal))}
		rep.Detail.RandomPearson[k] = Pearson(sr.rpred, sr.rreal)
	}
	rep.Detail.RetrainSeconds = time.Since(start).Seconds()
	return tr.Restore(final)
}

// logProb is log p(target) under the model's logits.
func logProb(logits []float32, target int32) float64 {
	return math.Log(lm.Probabilities(logits, 1)[target])
}

// hits turns memory indices into the hits Scanner.Counterfactual removes (it rescores each
// with the scanner).
func hits(idx []int) []dualmem.Hit {
	h := make([]dualmem.Hit, len(idx))
	for i, j := range idx {
		h[i] = dualmem.Hit{Index: j}
	}
	return h
}

// Table renders the report for people.
func (r *Report) Table(opts Options) string {
	opts.defaults()
	var b []byte
	f := func(format string, a ...any) { b = fmt.Appendf(b, format, a...) }
	d := r.Detail
	f("memory: %d training tokens at out; eval loss %.3f; dual max |logit err| %.2g; train %.0fs, %d retrains %.0fs\n",
		d.MemoryTokens, d.FinalLoss, d.DualMaxAbsErr, d.TrainSeconds, d.Retrains, d.RetrainSeconds)
	if r.Canaries.Recall != nil {
		f("\ncanaries: %d facts × %d occurrences (e.g. %q); %.3f of code characters were ever a training target\n",
			len(d.Facts), opts.Reps, d.Facts[0].Text, d.CodeTrained)
		f("%-22s", "recall@k")
		for _, k := range opts.RecallKs {
			f(" %8s", "@"+strconv.Itoa(k))
		}
		f("\n")
		f(" %s\n", "   (predicted p>0.5 | not)")
		for _, v := range views() {
			f("%-22s", v.name())
			for _, k := range opts.RecallKs {
				f(" %8.3f", float64(r.Canaries.Recall[v.name()][strconv.Itoa(k)]))
			}
			f("    ")
			for _, k := range opts.RecallKs {
				f(" %6.3f", float64(r.Canaries.Predicted[v.name()][strconv.Itoa(k)]))
			}
			f(" |")
			for _, k := range opts.RecallKs {
				f(" %6.3f", float64(r.Canaries.Unpredicted[v.name()][strconv.Itoa(k)]))
			}
			f("\n")
		}
		f("code characters: %d (%d predicted); default view %s\n", r.Canaries.Chars["all"], r.Canaries.Chars["predicted"],
			r.Canaries.Default.Name)
	}
	if len(d.Queries) > 0 {
		f("\nretrain without the top-k by contribution, %d held-out queries\n", opts.Queries)
		f("%6s %9s %9s %16s %15s\n", "k", "spearman", "pearson", "random_spearman", "random_pearson")
		for _, k := range opts.RetrainKs {
			x := r.Retrain.K[strconv.Itoa(k)]
			f("%6d %9.3f %9.3f %16.3f %15.3f\n", k, float64(x.Spearman), float64(x.Pearson), float64(x.RandomSpearman),
				d.RandomPearson[k])
		}
		f("reproduction (retrain, nothing masked): max |Δlog p| = %.3g\n", float64(r.ReproduceMaxAbsDLogp))
		f("\n%5s %4s %8s %11s %11s %11s %11s\n", "query", "k", "log p", "predicted", "real", "rnd pred", "rnd real")
		for _, q := range d.Queries {
			f("%5d %4d %8.3f %+11.4g %+11.4g %+11.4g %+11.4g\n", q.Query, q.K, q.LogP, q.Predicted,
				q.Real, q.RandomPredicted, q.RandomReal)
		}
	}
	return string(b)
}

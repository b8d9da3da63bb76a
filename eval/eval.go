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
	"time"

	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
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

// CanaryReport holds recall@k by ranking ("contribution", "attention", "random") and k.
type CanaryReport struct {
	Recall map[string]map[string]Num `json:"recall"`
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
	Predicted, Real             float64 // Δlog p: memory counterfactual vs retrain, top-k by contribution
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
	cfg.Layers = []string{"out"}
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
	opts.Log("trained %d steps in %.0fs, eval loss %.3f", cfg.Steps, rep.Detail.TrainSeconds, last.EvalLoss)
	om, err := NewOutMemory(dir.Store)
	if err != nil {
		return nil, err
	}
	rep.Detail.MemoryTokens = om.Tokens()
	rng := rand.New(rand.NewPCG(opts.Seed, 0xe7a1))
	if len(facts) > 0 {
		if err := canaries(tr, om, facts, opts, rng, rep); err != nil {
			return nil, err
		}
	}
	if opts.Queries > 0 {
		if err := retrain(ctx, tr, om, mem.snaps, opts, rng, rep); err != nil {
			return nil, err
		}
	} else {
		rep.ReproduceMaxAbsDLogp = Num(math.NaN())
	}
	return rep, nil
}

// canaries prompts with each fact's prefix, teacher-forced over its code, and checks whether
// the top-k training tokens of each code character include one of the fact's occurrences.
func canaries(tr *lm.Trainer, om *OutMemory, facts []Fact, opts Options, rng *rand.Rand, rep *Report) error {
	var contexts [][]int32
	var targets []int32
	var owner []int
	for f, fact := range facts {
		ids, err := tr.Tok.Encode(fact.Text)
		if err != nil {
			return err
		}
		for i := fact.CodeAt; i < fact.CodeAt+len([]rune(fact.Code)); i++ {
			contexts, targets, owner = append(contexts, ids[:i]), append(targets, ids[i]), append(owner, f)
		}
	}
	probes, err := tr.Probe(contexts, targets)
	if err != nil {
		return err
	}
	maxK := slicesMax(opts.RecallKs)
	rankings := []string{"contribution", "attention", "random"}
	hits := map[string]map[int][]float64{} // ranking → k → per fact share of code tokens hit
	for _, r := range rankings {
		hits[r] = map[int][]float64{}
		for _, k := range opts.RecallKs {
			hits[r][k] = make([]float64, len(facts))
		}
	}
	perFact := make([]int, len(facts))
	for q, p := range probes {
		s := om.Scan(p.Layers["out"].X, targets[q])
		rep.Detail.DualMaxAbsErr = math.Max(rep.Detail.DualMaxAbsErr, math.Abs(s.Logit-float64(p.Logits[targets[q]])))
		fact := facts[owner[q]]
		perFact[owner[q]]++
		for _, r := range rankings {
			var top []int
			if r == "random" {
				top = randomTokens(rng, om.Tokens(), maxK)
			} else {
				top = s.Top(maxK, r)
			}
			for _, k := range opts.RecallKs {
				for _, j := range top[:min(k, len(top))] {
					if fact.Contains(om.M.Offsets[j]) {
						hits[r][k][owner[q]]++
						break
					}
				}
			}
		}
	}
	rep.Canaries.Recall = map[string]map[string]Num{}
	for _, r := range rankings {
		rep.Canaries.Recall[r] = map[string]Num{}
		for _, k := range opts.RecallKs {
			var sum float64
			for f, h := range hits[r][k] {
				sum += h / float64(perFact[f])
			}
			rep.Canaries.Recall[r][strconv.Itoa(k)] = Num(sum / float64(len(facts)))
		}
	}
	opts.Log("canaries: %d facts × %d occurrences, %d code tokens scanned over %d training tokens",
		len(facts), opts.Reps, len(probes), om.Tokens())
	return nil
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

// retrain compares the memory's counterfactual with real retraining, one retrain per query and
// k (masking the top-k of several queries in one run would mix their effects: each query's
// measured change would include what the other queries' tokens did to it).
func retrain(ctx context.Context, tr *lm.Trainer, om *OutMemory, snaps map[int][]byte, opts Options,
	rng *rand.Rand, rep *Report) error {
	T := tr.Step
	final := snaps[T]
	contexts, targets := tr.HeldOut(opts.Queries)
	probes, err := tr.Probe(contexts, targets)
	if err != nil {
		return err
	}
	logp := make([]float64, len(probes))
	for q, p := range probes {
		logp[q] = logProb(p.Logits, targets[q])
	}
	start := time.Now()
	// run retrains from the latest snapshot before the first masked step and returns log p of
	// the query targets afterwards.
	run := func(masked []int, qs []int) ([]float64, error) {
		first := T + 1
		byStep := map[int][]int{}
		for _, j := range masked {
			st := int(om.M.Step[j])
			first = min(first, st)
			byStep[st] = append(byStep[st], int(om.M.Rows[j])*tr.Cfg.Ctx+int(om.M.Pos[j]))
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
		for tr.Step < T {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			b := tr.BatchAt(tr.Step + 1)
			for _, i := range byStep[tr.Step+1] {
				b.Mask[i] = 0
			}
			if _, err := tr.TrainStep(b); err != nil {
				return nil, err
			}
		}
		rep.Detail.Retrains++
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
	again, err := run(nil, all)
	if err != nil {
		return err
	}
	var repro float64
	for q := range again {
		repro = math.Max(repro, math.Abs(again[q]-logp[q]))
	}
	rep.ReproduceMaxAbsDLogp = Num(repro)
	opts.Log("reproduction: retrain with nothing masked, max |Δlog p| = %.3g over %d queries", repro, len(all))

	maxK := slicesMax(opts.RetrainKs)
	rep.Retrain.K = map[string]RetrainK{}
	type series struct{ pred, real, rpred, rreal []float64 }
	per := map[int]*series{}
	for _, k := range opts.RetrainKs {
		per[k] = &series{}
	}
	for q, p := range probes {
		s := om.Scan(p.Layers["out"].X, targets[q])
		rep.Detail.DualMaxAbsErr = math.Max(rep.Detail.DualMaxAbsErr, math.Abs(s.Logit-float64(p.Logits[targets[q]])))
		top := s.Top(maxK, "contribution")
		for _, k := range opts.RetrainKs {
			r := QueryResult{Query: q, K: k, Context: tr.Tok.Decode(contexts[q]), Target: tr.Tok.DecodeOne(targets[q]), LogP: logp[q]}
			sel := top[:min(k, len(top))]
			r.Predicted = om.Counterfactual(s, p.Logits, sel)
			got, err := run(sel, []int{q})
			if err != nil {
				return err
			}
			r.Real = got[0] - logp[q]
			rnd := randomTokens(rng, om.Tokens(), k)
			r.RandomPredicted = om.Counterfactual(s, p.Logits, rnd)
			if got, err = run(rnd, []int{q}); err != nil {
				return err
			}
			r.RandomReal = got[0] - logp[q]
			sr := per[k]
			sr.pred, sr.real = append(sr.pred, r.Predicted), append(sr.real, r.Real)
			sr.rpred, sr.rreal = append(sr.rpred, r.RandomPredicted), append(sr.rreal, r.RandomReal)
			rep.Detail.Queries = append(rep.Detail.Queries, r)
			opts.Log("query %d/%d k=%d: predicted %+.4g real %+.4g; random predicted %+.4g real %+.4g (%.0fs)",
				q+1, len(probes), k, r.Predicted, r.Real, r.RandomPredicted, r.RandomReal, time.Since(start).Seconds())
		}
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

// check that the store satisfies the interface the trainer writes to.
var _ lm.Memory = (*dualmem.Store)(nil)

// Table renders the report for people.
func (r *Report) Table(opts Options) string {
	opts.defaults()
	var b []byte
	f := func(format string, a ...any) { b = fmt.Appendf(b, format, a...) }
	d := r.Detail
	f("memory: %d training tokens at out; eval loss %.3f; dual max |logit err| %.2g; train %.0fs, %d retrains %.0fs\n",
		d.MemoryTokens, d.FinalLoss, d.DualMaxAbsErr, d.TrainSeconds, d.Retrains, d.RetrainSeconds)
	if r.Canaries.Recall != nil {
		f("\ncanaries: %d facts × %d occurrences (e.g. %q)\n", len(d.Facts), opts.Reps, d.Facts[0].Text)
		f("%-14s", "recall@k")
		for _, k := range opts.RecallKs {
			f(" %8s", "@"+strconv.Itoa(k))
		}
		f("\n")
		for _, rk := range []string{"contribution", "attention", "random"} {
			f("%-14s", rk)
			for _, k := range opts.RecallKs {
				f(" %8.3f", float64(r.Canaries.Recall[rk][strconv.Itoa(k)]))
			}
			f("\n")
		}
	}
	if r.Retrain.K != nil {
		f("\nretrain without the top-k by contribution, %d held-out queries\n", opts.Queries)
		f("%6s %9s %9s %16s %15s\n", "k", "spearman", "pearson", "random_spearman", "random_pearson")
		for _, k := range opts.RetrainKs {
			x := r.Retrain.K[strconv.Itoa(k)]
			f("%6d %9.3f %9.3f %16.3f %15.3f\n", k, float64(x.Spearman), float64(x.Pearson), float64(x.RandomSpearman), d.RandomPearson[k])
		}
		f("reproduction (retrain, nothing masked): max |Δlog p| = %.3g\n", float64(r.ReproduceMaxAbsDLogp))
		f("\n%5s %4s %8s %11s %11s %11s %11s\n", "query", "k", "log p", "predicted", "real", "rnd pred", "rnd real")
		for _, q := range d.Queries {
			f("%5d %4d %8.3f %+11.4g %+11.4g %+11.4g %+11.4g\n", q.Query, q.K, q.LogP, q.Predicted, q.Real, q.RandomPredicted, q.RandomReal)
		}
	}
	return string(b)
}

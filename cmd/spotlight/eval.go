package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/eval"
	"github.com/spotlight-lm/spotlight/lm"
)

// EvalCommand measures attribution faithfulness on a fresh training run (package eval).
type EvalCommand struct {
	Options             eval.Options // Data, Corpus and Config are filled by Run
	Data, Corpus        string
	Preset              string
	RecallKs, RetrainKs string // comma-separated
	JSON                bool
	Hyper               *configFlags
}

func newEvalCmd() *cobra.Command {
	c := &EvalCommand{}
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Measure attribution faithfulness: planted-fact recall@k and counterfactual vs retraining",
		Example: `  spotlight eval --data /tmp/ev --steps 600
  spotlight eval --data /tmp/ev --queries 0 --canaries 40 --json   # recall@k only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Data, "data", "", "data directory to create for the evaluation run")
	fl.StringVar(&c.Corpus, "corpus", corpora.DefaultName, "base corpus: \"opticks\" or a path to a UTF-8 text file")
	fl.StringVar(&c.Preset, "preset", "tiny", "hyperparameter preset: tiny or small")
	fl.BoolVar(&c.JSON, "json", false, "print one JSON document")
	o := &c.Options
	fl.IntVar(&o.Canaries, "canaries", 20, "planted facts (0 skips the canary experiment)")
	fl.IntVar(&o.Reps, "reps", 6, "occurrences of each planted fact")
	fl.IntVar(&o.Queries, "queries", 20, "held-out query tokens for the retrain experiment (0 skips it)")
	fl.StringVar(&c.RecallKs, "recall-ks", "1,10", "k of recall@k, comma-separated")
	fl.StringVar(&c.RetrainKs, "ks", "1,10,100", "k of the retrain experiment, comma-separated")
	fl.Uint64Var(&o.Seed, "seed", 1, "seed for planting facts and drawing random tokens")
	fl.IntVar(&o.SnapshotEvery, "snapshot-every", 25, "steps between the in-memory checkpoints retrains start from")
	fl.IntVar(&o.Workers, "workers", 1, "retrains run at once, each on its own trainer")
	c.Hyper = bindConfig(fl, "seed") // --seed is the planting seed; the run keeps its preset's
	cmd.Long = `eval plants --canaries made-up facts (--reps times each) into the corpus, trains a model
into --data (which must not hold one), and reports:
  recall@k: the share of facts whose top-k training tokens at layer out (by contribution, by
            attention, and k random tokens) include an occurrence of the fact, for the code
            characters after the fact's prefix;
  retrain:  for --queries held-out tokens and each k, the memory's predicted change of
            log p(token) without its top-k training tokens (by contribution) against the change
            measured by retraining from the same seed and batches with those tokens' loss masked,
            as Spearman and Pearson correlations across queries, and the same for k random
            tokens; plus the largest |Δlog p| of a retrain with nothing masked.
Every query and k costs two retrains (top-k and random); each starts from the in-memory
checkpoint just before the first masked step.

` + c.Hyper.presetTable()
	_ = cmd.MarkFlagRequired("data")
	cmd.AddCommand(newEvalLDSCmd())
	return cmd
}

// Run trains, runs both experiments and prints the report.
func (c *EvalCommand) Run(ctx context.Context) error {
	if err := checkData(c.Data); err != nil {
		return err
	}
	cfg, err := c.Hyper.fitted(c.Preset)
	if err != nil {
		return err
	}
	o := c.Options
	if o.RecallKs, err = parseKs("recall-ks", c.RecallKs); err != nil {
		return err
	}
	if o.RetrainKs, err = parseKs("ks", c.RetrainKs); err != nil {
		return err
	}
	_, text, err := corpora.Load(c.Corpus)
	if err != nil {
		return err
	}
	o.Data, o.Corpus, o.Config = c.Data, string(text), cfg
	o.Log = func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	bar := newProgress(nil, "training", cfg.Steps)
	o.Progress = func(p lm.Progress) { bar.Set(p.Step, "step", p.Step, "loss", fmt.Sprintf("%.3f", p.Loss)) }
	rep, err := eval.Run(ctx, o)
	bar.Finish()
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(rep)
	}
	fmt.Print(rep.Table(o))
	return nil
}

func parseKs(flag, s string) ([]int, error) {
	var ks []int
	for _, f := range strings.Split(s, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k <= 0 {
			return nil, fmt.Errorf("--%s: %q is not a positive integer", flag, f)
		}
		ks = append(ks, k)
	}
	return ks, nil
}

package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/eval"
)

// newEvalLDSCmd is `spotlight eval lds`; the eval command adds it as its subcommand.
func newEvalLDSCmd() *cobra.Command {
	var (
		corpus, preset string
		asJSON         bool
		opts           eval.LDSOptions
		hyper          *configFlags
	)
	cmd := &cobra.Command{
		Use:   "lds",
		Short: "Linear datamodeling score of Spotlight's and the field's attributions against real retraining",
		Example: `  spotlight eval lds --d 32 --steps 300 --json
  spotlight eval lds --d 32 --steps 300 --subsets 24 --queries 40 --corpus notes.txt`,
		Long: `lds trains a model (in memory; nothing is written to disk), draws --subsets random drops
that each remove a --drop share of the training tokens — every token occurrence of every step
independently, by masking its loss, not whole rows — and retrains once per subset from the
same seed and batches. For each of --queries held-out tokens and each method it correlates
(Spearman, across subsets) the method's predicted change of the query's loss, the sum of its
per-token scores over the dropped tokens, with the real change, and reports the mean over
queries with a 95% bootstrap interval.

Methods: Spotlight's dual-memory contributions to the query's logit, margin and log p (out,
and summed over every captured layer), gradient dot product at the final weights and
TracIn-CP over --checkpoints checkpoints (per-token gradients of the same linear layers, and
of all parameters),
BM25 and n-gram suffix matching of the contexts, and a random score.
The noise floor is the std across subsets of the real Δloss (mean over queries).
--cross-seed retrains under seed+1 and drops corpus offsets (every occurrence of a dropped
position), since token occurrences do not carry over to another batch order; the predictions
still come from the seed run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := hyper.fitted(preset)
			if err != nil {
				return err
			}
			_, text, err := corpora.Load(corpus)
			if err != nil {
				return err
			}
			opts.Corpus, opts.Config = string(text), cfg
			opts.Log = func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
			rep, err := eval.RunLDS(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(rep)
			}
			fmt.Print(rep.Table())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&corpus, "corpus", corpora.DefaultName, "corpus: \"opticks\" or a path to a UTF-8 text file")
	fl.StringVar(&preset, "preset", "tiny", "hyperparameter preset: tiny or small")
	fl.BoolVar(&asJSON, "json", false, "print one JSON document")
	fl.IntVar(&opts.Subsets, "subsets", 100, "random subsets, each retrained once")
	fl.Float64Var(&opts.Drop, "drop", 0.01, "share of the training tokens each subset drops")
	fl.IntVar(&opts.Queries, "queries", 50, "held-out query tokens")
	fl.IntVar(&opts.Checkpoints, "checkpoints", 4, "TracIn-CP checkpoints, evenly spaced, the last one final")
	fl.BoolVar(&opts.Influence, "influence", false, "also score by the exact influence through the whole run (a reverse replay per query: several training runs' time)")
	fl.BoolVar(&opts.SkipAllParams, "skip-all-params", false, "leave out grad-dot and TracIn-CP over all parameters (6–8× the cost of the linear layers' versions)")
	fl.BoolVar(&opts.NoiseOnly, "noise-only", false, "score no method: measure the noise floor and held-out losses only (to compare training regimes)")
	fl.BoolVar(&opts.CrossSeed, "cross-seed", false, "retrain under seed+1 (subsets then drop corpus offsets)")
	fl.Uint64Var(&opts.Seed, "seed", 1, "seed of the subsets and the random score")
	fl.IntVar(&opts.Workers, "workers", 1, "retrains run at once, each on its own trainer")
	fl.IntVar(&opts.Bootstrap, "bootstrap", 2000, "bootstrap resamples of the queries for the 95% interval")
	fl.IntVar(&opts.Singles, "singles", 2, "extra retrains dropping one random token each (the chaos probe; 0 skips)")
	hyper = bindConfig(fl, "seed", "checkpoint-every") // --seed seeds the subsets; nothing is checkpointed
	cmd.Long += "\n\n" + hyper.presetTable()
	return cmd
}

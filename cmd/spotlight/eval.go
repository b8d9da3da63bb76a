package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/eval"
	"github.com/spotlight-lm/spotlight/lm"
)

func newEvalCmd() *cobra.Command {
	var (
		data, corpus, preset, recallKs, retrainKs string
		asJSON                                    bool
		opts                                      eval.Options
		steps, d, heads, ctx, batch               int
		lr, momentum                              float64
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Measure attribution faithfulness: planted-fact recall@k and counterfactual vs retraining",
		Long: `eval plants --canaries made-up facts (--reps times each) into the corpus, trains a model
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
checkpoint just before the first masked step.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := lm.Preset(preset)
			if err != nil {
				return err
			}
			set := cmd.Flags().Changed
			for name, apply := range map[string]func(){
				"steps": func() { cfg.Steps = steps }, "d": func() { cfg.D = d }, "heads": func() { cfg.Heads = heads },
				"ctx": func() { cfg.Ctx = ctx }, "batch": func() { cfg.Batch = batch },
				"lr": func() { cfg.LR = lr }, "momentum": func() { cfg.Momentum = momentum },
			} {
				if set(name) {
					apply()
				}
			}
			if set("steps") && cfg.Warmup >= cfg.Steps {
				cfg.Warmup = cfg.Steps / 10
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			if opts.RecallKs, err = parseKs("recall-ks", recallKs); err != nil {
				return err
			}
			if opts.RetrainKs, err = parseKs("ks", retrainKs); err != nil {
				return err
			}
			_, text, err := corpora.Load(corpus)
			if err != nil {
				return err
			}
			opts.Data, opts.Corpus, opts.Config = data, string(text), cfg
			opts.Log = func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
			bar := progressbar.NewOptions(cfg.Steps, progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionSetDescription("training"), progressbar.OptionShowCount(),
				progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
			opts.Progress = func(p lm.Progress) { _ = bar.Set(p.Step) }
			rep, err := eval.Run(cmd.Context(), opts)
			_ = bar.Finish()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(rep)
			}
			fmt.Print(rep.Table(opts))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&data, "data", "", "data directory to create for the evaluation run")
	fl.StringVar(&corpus, "corpus", corpora.DefaultName, "base corpus: \"opticks\" or a path to a UTF-8 text file")
	fl.StringVar(&preset, "preset", "tiny", "hyperparameter preset: tiny or small")
	fl.BoolVar(&asJSON, "json", false, "print one JSON document")
	fl.IntVar(&opts.Canaries, "canaries", 20, "planted facts (0 skips the canary experiment)")
	fl.IntVar(&opts.Reps, "reps", 6, "occurrences of each planted fact")
	fl.IntVar(&opts.Queries, "queries", 20, "held-out query tokens for the retrain experiment (0 skips it)")
	fl.StringVar(&recallKs, "recall-ks", "1,10", "k of recall@k, comma-separated")
	fl.StringVar(&retrainKs, "ks", "1,10,100", "k of the retrain experiment, comma-separated")
	fl.Uint64Var(&opts.Seed, "seed", 1, "seed for planting facts and drawing random tokens")
	fl.IntVar(&opts.SnapshotEvery, "snapshot-every", 25, "steps between the in-memory checkpoints retrains start from")
	fl.IntVar(&opts.Workers, "workers", 1, "retrains run at once, each on its own trainer")
	fl.IntVar(&steps, "steps", 0, "training steps (default: the preset's)")
	fl.IntVar(&d, "d", 0, "model width (default: the preset's)")
	fl.IntVar(&heads, "heads", 0, "attention heads (default: the preset's)")
	fl.IntVar(&ctx, "ctx", 0, "context length (default: the preset's)")
	fl.IntVar(&batch, "batch", 0, "rows per batch (default: the preset's)")
	fl.Float64Var(&lr, "lr", 0, "peak learning rate (default: the preset's)")
	fl.Float64Var(&momentum, "momentum", 0, "heavy-ball momentum (default: the preset's)")
	_ = cmd.MarkFlagRequired("data")
	cmd.AddCommand(newEvalLDSCmd())
	return cmd
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

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/lm"
)

type trainFlags struct {
	data, corpus, preset, layers, precision string
	resume                                  bool
	limit                                   time.Duration
	cfg                                     lm.Config // flag values; applied over the preset only when set
}

func newTrainCmd() *cobra.Command {
	var f trainFlags
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a model on a corpus, capturing its dual-form memory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTrain(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", "", "data directory (created if missing)")
	fl.StringVar(&f.corpus, "corpus", corpora.DefaultName, "corpus: the embedded name \"opticks\" or a path to a UTF-8 text file")
	fl.StringVar(&f.preset, "preset", "tiny", "hyperparameter preset: tiny or small")
	fl.StringVar(&f.layers, "layers", "", "comma-separated layers to capture (default: all; e.g. out,block0.ff1)")
	fl.StringVar(&f.precision, "precision", "f32", "memory precision: f32 (exact) or f16 (half size)")
	fl.BoolVar(&f.resume, "resume", false, "continue the run in --data from its last checkpoint")
	fl.DurationVar(&f.limit, "for", 0, "stop after this long (e.g. 30m), with a checkpoint; 0 means run all steps")
	fl.IntVar(&f.cfg.Steps, "steps", 0, "total optimizer steps")
	fl.IntVar(&f.cfg.Batch, "batch", 0, "rows per batch")
	fl.IntVar(&f.cfg.Warmup, "warmup", 0, "linear warmup steps before cosine decay")
	fl.IntVar(&f.cfg.CheckpointEvery, "checkpoint-every", 0, "steps between checkpoints")
	fl.Float64Var(&f.cfg.LR, "lr", 0, "peak learning rate")
	fl.Float64Var(&f.cfg.Momentum, "momentum", 0, "heavy-ball momentum")
	fl.Float64Var(&f.cfg.WeightDecay, "weight-decay", 0, "coupled weight decay (not on biases or LayerNorm)")
	fl.Float64Var(&f.cfg.Clip, "clip", 0, "global gradient-norm clip (0 disables)")
	fl.Uint64Var(&f.cfg.Seed, "seed", 0, "seed for initialisation and batch order")
	fl.IntVar(&f.cfg.D, "d", 0, "model width")
	fl.IntVar(&f.cfg.Blocks, "blocks", 0, "transformer blocks")
	fl.IntVar(&f.cfg.Heads, "heads", 0, "attention heads")
	fl.IntVar(&f.cfg.Ctx, "ctx", 0, "context length in characters")
	_ = cmd.MarkFlagRequired("data")
	return cmd
}

// config is the preset with every flag the user set applied over it.
func (f *trainFlags) config(cmd *cobra.Command) (lm.Config, error) {
	c, err := lm.Preset(f.preset)
	if err != nil {
		return c, err
	}
	set := cmd.Flags().Changed
	for name, apply := range map[string]func(){
		"steps": func() { c.Steps = f.cfg.Steps }, "batch": func() { c.Batch = f.cfg.Batch },
		"warmup": func() { c.Warmup = f.cfg.Warmup }, "checkpoint-every": func() { c.CheckpointEvery = f.cfg.CheckpointEvery },
		"lr": func() { c.LR = f.cfg.LR }, "momentum": func() { c.Momentum = f.cfg.Momentum },
		"weight-decay": func() { c.WeightDecay = f.cfg.WeightDecay }, "clip": func() { c.Clip = f.cfg.Clip },
		"seed": func() { c.Seed = f.cfg.Seed }, "d": func() { c.D = f.cfg.D }, "blocks": func() { c.Blocks = f.cfg.Blocks },
		"heads": func() { c.Heads = f.cfg.Heads }, "ctx": func() { c.Ctx = f.cfg.Ctx },
	} {
		if set(name) {
			apply()
		}
	}
	c.Precision = f.precision
	if f.layers != "" {
		c.Layers = strings.Split(f.layers, ",")
	}
	return c, c.Validate()
}

func runTrain(cmd *cobra.Command, f *trainFlags) error {
	var (
		dir *datadir.Dir
		tr  *lm.Trainer
		err error
	)
	if f.resume {
		dir, tr, err = resumeRun(f.data)
	} else {
		dir, tr, err = startRun(cmd, f)
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	defer tr.Close()
	until := tr.Cfg.Steps
	if f.resume && cmd.Flags().Changed("steps") {
		until = f.cfg.Steps
	}
	ctx := cmd.Context()
	if f.limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.limit)
		defer cancel()
	}
	return train(ctx, dir, tr, until)
}

func startRun(cmd *cobra.Command, f *trainFlags) (*datadir.Dir, *lm.Trainer, error) {
	cfg, err := f.config(cmd)
	if err != nil {
		return nil, nil, err
	}
	_, text, err := corpora.Load(f.corpus)
	if err != nil {
		return nil, nil, err
	}
	return datadir.Create(f.data, cfg, text)
}

func resumeRun(data string) (*datadir.Dir, *lm.Trainer, error) {
	dir, err := datadir.Open(data, false)
	if err != nil {
		return nil, nil, err
	}
	tr, err := dir.Resume()
	if err != nil {
		dir.Close()
		return nil, nil, err
	}
	return dir, tr, nil
}

// train runs the trainer to step `until` with a progress bar on stderr. When ctx reaches
// its deadline (--for), that is a normal end: the trainer has committed a checkpoint.
func train(ctx context.Context, dir *datadir.Dir, tr *lm.Trainer, until int) error {
	if tr.Step >= until {
		fmt.Fprintf(os.Stderr, "already at step %d of %d\n", tr.Step, until)
		return nil
	}
	bar := progressbar.NewOptions(until,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription("training"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish())
	_ = bar.Set(tr.Step)
	lastEval := "-"
	err := tr.Train(ctx, dir.Store, until, func(p lm.Progress) {
		if p.EvalLoss == p.EvalLoss { // not NaN: a checkpoint was just written
			lastEval = fmt.Sprintf("%.3f", p.EvalLoss)
		}
		bar.Describe(fmt.Sprintf("step %d loss %.3f eval %s %.0f tok/s", p.Step, p.Loss, lastEval, p.TokensPerSec))
		_ = bar.Set(p.Step)
	})
	_ = bar.Finish()
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(os.Stderr, "time limit reached at step %d; checkpoint written\n", tr.Step)
		if ev, err := tr.EvalLoss(); err == nil {
			lastEval = fmt.Sprintf("%.3f", ev)
		}
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted; checkpoint at step %d written, continue with --resume", tr.Step)
	case err != nil:
		return err
	}
	fmt.Fprintf(os.Stderr, "trained to step %d, eval loss %s, data in %s\n", tr.Step, lastEval, dir.Store.Dir())
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/lm"
)

// TrainCommand trains a model on a corpus into a new data directory, or continues the run
// in one (Resume).
type TrainCommand struct {
	Data, Corpus, Preset string
	Layers               string // comma-separated; "" means all
	Precision            string
	Resume               bool
	For                  time.Duration // stop after this long with a checkpoint; 0: run all steps
	KeepEvery            int           // steps between the checkpoints kept for retraining
	Hyper                *configFlags
}

// fixedOnResume are train's own flags that --resume refuses, with the reason.
var fixedOnResume = map[string]string{"preset": fixedRun, "corpus": fixedRun, "layers": fixedMemory, "precision": fixedMemory}

func newTrainCmd() *cobra.Command {
	c := &TrainCommand{}
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a model on a corpus, capturing its dual-form memory",
		Example: `  spotlight train --data ./d                          # tiny preset, embedded corpus
  spotlight train --data ./d --preset small --steps 4000 --layers out
  spotlight train --data ./d --corpus notes.txt --for 30m
  spotlight train --data ./d --resume --steps 6000     # continue to step 6000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Data, "data", "", "data directory (created if missing)")
	fl.StringVar(&c.Corpus, "corpus", corpora.DefaultName, "corpus: the embedded name \"opticks\" or a path to a UTF-8 text file")
	fl.StringVar(&c.Preset, "preset", "tiny", "hyperparameter preset: tiny or small")
	fl.StringVar(&c.Layers, "layers", "", "comma-separated layers to capture (default: all; e.g. out,block0.ff1)")
	fl.StringVar(&c.Precision, "precision", "f32", "memory precision: f32 (exact) or f16 (half size)")
	fl.BoolVar(&c.Resume, "resume", false, "continue the run in --data from its last checkpoint (honours --steps, --for, --checkpoint-every)")
	fl.DurationVar(&c.For, "for", 0, "stop after this long (e.g. 30m), with a checkpoint; 0 means run all steps")
	fl.IntVar(&c.KeepEvery, "checkpoint-keep-every", datadir.DefaultKeepEvery,
		"keep a checkpoint every this many steps for retraining (spotlight counterfactual); 0 keeps only step 0's")
	c.Hyper = bindConfig(fl)
	cmd.Long = "Train a model on a corpus into --data, capturing the dual form of its layers at every step.\n\n" + c.Hyper.presetTable()
	_ = cmd.MarkFlagRequired("data")
	return cmd
}

// Run trains to the config's last step (or --steps on --resume).
func (c *TrainCommand) Run(ctx context.Context) error {
	if err := checkData(c.Data); err != nil {
		return err
	}
	open := c.create
	if c.Resume {
		open = c.resume
	}
	dir, tr, err := open()
	if err != nil {
		return err
	}
	defer dir.Close()
	defer tr.Close()
	dir.Store.SetKeepEvery(c.KeepEvery)
	// The aggregates and block bounds serve queries; written with every step they would
	// cost training more than the capture itself, so the first serve builds them.
	if err := dir.Store.SkipDerived(); err != nil {
		return err
	}
	until := tr.Cfg.Steps
	if c.Resume && c.Hyper.fs.Changed("steps") {
		until = c.Hyper.values.Steps
	}
	if c.For > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.For)
		defer cancel()
	}
	return train(ctx, nil, dir, tr, until)
}

// config is the preset with the flags the user set applied over it.
func (c *TrainCommand) config() (lm.Config, error) {
	cfg, err := c.Hyper.config(c.Preset)
	if err != nil {
		return cfg, err
	}
	cfg.Precision = c.Precision
	if c.Layers != "" {
		cfg.Layers = strings.Split(c.Layers, ",")
	}
	return cfg, cfg.Validate()
}

func (c *TrainCommand) create() (*datadir.Dir, *lm.Trainer, error) {
	cfg, err := c.config()
	if err != nil {
		return nil, nil, err
	}
	_, text, err := corpora.Load(c.Corpus)
	if err != nil {
		return nil, nil, err
	}
	dir, tr, err := datadir.Create(c.Data, cfg, text)
	if errors.Is(err, datadir.ErrExists) {
		return nil, nil, fmt.Errorf("%s already holds a model; to continue it: spotlight train --data %s --resume", c.Data, c.Data)
	}
	return dir, tr, err
}

func (c *TrainCommand) resume() (*datadir.Dir, *lm.Trainer, error) {
	if err := c.refuseFixed(); err != nil {
		return nil, nil, err
	}
	every, setEvery := c.Hyper.values.CheckpointEvery, c.Hyper.fs.Changed("checkpoint-every")
	if setEvery && every <= 0 {
		return nil, nil, errors.New("--checkpoint-every must be positive")
	}
	dir, err := datadir.Open(c.Data, false)
	if err != nil {
		return nil, nil, err
	}
	tr, err := dir.Resume()
	if err != nil {
		dir.Close()
		return nil, nil, err
	}
	if setEvery {
		tr.Cfg.CheckpointEvery = every
	}
	return dir, tr, nil
}

// refuseFixed names the first flag set that a resumed run cannot change.
func (c *TrainCommand) refuseFixed() error {
	var err error
	c.Hyper.fs.Visit(func(f *pflag.Flag) {
		reason := fixedOnResume[f.Name]
		for _, h := range c.Hyper.hypers {
			if h.name == f.Name {
				reason = h.fixed
			}
		}
		if reason != "" && err == nil {
			err = fmt.Errorf("--%s cannot change on --resume: %s", f.Name, reason)
		}
	})
	return err
}

// train runs the trainer to step `until`, reporting progress on stderr (log, when not nil,
// takes the lines off a terminal). When ctx reaches its deadline (--for), that is a normal
// end: the trainer has committed a checkpoint. Its lines name the two losses as stats, the
// API and the page do: the train loss of the last step's batch and the held-out loss.
func train(ctx context.Context, log *slog.Logger, dir *datadir.Dir, tr *lm.Trainer, until int) error {
	if tr.Step >= until {
		fmt.Fprintf(os.Stderr, "already at step %d of %d\n", tr.Step, until)
		return nil
	}
	bar := newProgress(log, "training", until)
	bar.Event("training", "from", tr.Step, "to", until, "data", dir.Store.Dir(), "held_out", heldOutWindows(tr.Cfg))
	lastEval, lastLoss := "-", "-"
	err := tr.Train(ctx, dir.Store, until, func(p lm.Progress) {
		lastLoss = fmt.Sprintf("%.3f", p.Loss)
		if p.EvalLoss == p.EvalLoss { // not NaN: a checkpoint was just written
			lastEval = fmt.Sprintf("%.3f", p.EvalLoss)
			bar.Event("checkpoint", "step", p.Step, "train_loss", lastLoss, "held_out_loss", lastEval)
		}
		bar.Set(p.Step, stepAttrs(lastLoss, lastEval, p.TokensPerSec)...)
	})
	bar.Finish()
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
	fmt.Fprintf(os.Stderr, "trained to step %d: train loss %s (last step's batch), held-out loss %s (%s); data in %s\n",
		tr.Step, lastLoss, lastEval, heldOutWindows(tr.Cfg), dir.Store.Dir())
	return nil
}

// stepAttrs are the values shown with the step count. The step itself is the count: a
// second copy in the bar's description would be drawn a frame apart from it.
func stepAttrs(trainLoss, heldOut string, tokensPerSec float64) []any {
	return []any{"train_loss", trainLoss, "held_out_loss", heldOut, "tok/s", fmt.Sprintf("%.0f", tokensPerSec)}
}

// heldOutWindows says what the held-out loss averages over: one batch of windows from the
// held-out end of the corpus.
func heldOutWindows(c lm.Config) string {
	return fmt.Sprintf("%d windows of %d characters", c.Batch, c.Ctx)
}

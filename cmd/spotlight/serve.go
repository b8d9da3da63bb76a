package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/api"
	"github.com/spotlight-lm/spotlight/api/web"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
)

// ServeCommand serves the HTTP API over a data directory, training it first when it holds
// no model.
type ServeCommand struct {
	Data, Addr, Token string
	MaxQueries        int
	MaxAnswerBytes    int64
	ContinueTraining  bool   // train a model short of its schedule to its last step while serving
	Preset, Corpus    string // of the first training run
	Hyper             *configFlags
}

func newServeCmd() *cobra.Command {
	c := &ServeCommand{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API (training a model first on an empty data directory)",
		Example: `  spotlight serve --data ./data                                  # trains opticks with the tiny preset first
  spotlight serve --data ./data --preset small --corpus notes.txt
  spotlight serve --data ./data --continue-training              # a run stopped short: finish it while serving
  SPOTLIGHT_TOKEN=secret spotlight serve --data /data --addr 0.0.0.0:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Data, "data", "", "data directory (trained first if empty or missing)")
	fl.StringVar(&c.Addr, "addr", api.DefaultAddr, "listen address; a non-loopback address needs a token")
	fl.StringVar(&c.Token, "token", "", "bearer token required on every request but /healthz (default $SPOTLIGHT_TOKEN)")
	fl.IntVar(&c.MaxQueries, "max-queries", api.DefaultMaxQueries, "generate/attribute requests at once; more get 429")
	fl.Int64Var(&c.MaxAnswerBytes, "max-answer-bytes", api.DefaultMaxAnswerBytes, "largest generate/attribute answer (JSON bytes); larger requests get 422 answer_too_large")
	fl.BoolVar(&c.ContinueTraining, "continue-training", false, "when the model stopped short of its --steps schedule, train the remaining steps in the background while serving (as POST /v1/train does)")
	fl.StringVar(&c.Preset, "preset", "tiny", "hyperparameter preset of the first training run: tiny or small")
	fl.StringVar(&c.Corpus, "corpus", corpora.DefaultName, "corpus of the first training run: \"opticks\" or a path to a UTF-8 text file")
	c.Hyper = bindConfig(fl)
	cmd.Long = "Serve the HTTP API and web page over --data. When --data holds no model, first train one\n" +
		"(--preset, --corpus and the hyperparameter flags apply to that run only).\n\n" + c.Hyper.presetTable()
	_ = cmd.MarkFlagRequired("data")
	return cmd
}

// Run binds the address first, so a bad or busy --addr fails before any training.
func (c *ServeCommand) Run(ctx context.Context) (rerr error) {
	if c.Token == "" {
		c.Token = os.Getenv("SPOTLIGHT_TOKEN")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("--addr %s: %w", c.Addr, err)
	}
	if err := api.CheckAddr(c.Addr, c.Token); err != nil {
		return err
	}
	if err := checkData(c.Data); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", c.Addr, err)
	}
	defer ln.Close()
	// The heap is dominated by the long-lived memory slabs; Go's default GOGC=100 would let
	// it grow to twice their size before collecting. An explicit GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	dir, readOnly, err := c.openOrTrain(ctx, log)
	if err != nil {
		return err
	}
	// Closing the directory can fail (a disk that stopped taking writes): the exit status says so.
	defer func() { rerr = errors.Join(rerr, dir.Close()) }()
	progress, done := layerProgress(log, "indexing")
	err = dir.PrepareMemory(progress)
	done()
	if err != nil {
		return err
	}
	srv, err := api.New(dir, api.Options{Token: c.Token, MaxQueries: c.MaxQueries, MaxAnswerBytes: c.MaxAnswerBytes, Logger: log, Web: web.Handler()})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := c.schedule(log, dir, srv, readOnly); err != nil {
		return err
	}
	if !readOnly {
		// The other commands find the server here instead of failing on the directory lock.
		remove, err := writeServerRecord(c.Data, ln.Addr(), c.Token != "")
		if err != nil {
			log.Warn("other commands will not find this server", "err", err.Error())
		} else {
			defer remove()
		}
	}
	log.Info("serving", "addr", "http://"+ln.Addr().String(), "data", c.Data, "auth", c.Token != "")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests, checkpointing training")
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(stopCtx)
}

// schedule says at start-up when the model stopped short of its schedule and, with
// --continue-training, starts training the remaining steps in the background.
func (c *ServeCommand) schedule(log *slog.Logger, dir *datadir.Dir, srv *api.Server, readOnly bool) error {
	step, steps := dir.Steps(), dir.Cfg.Steps
	switch {
	case step >= steps:
		if c.ContinueTraining {
			log.Info("--continue-training: nothing to do, the model is at the last step of its schedule", "step", step, "of", steps)
		}
		return nil
	case !c.ContinueTraining:
		log.Warn(fmt.Sprintf("serving a model short of its schedule: trained %d of %d steps; "+
			"serve --continue-training trains the rest while serving", step, steps), "step", step, "of", steps)
		return nil
	case readOnly:
		log.Warn("--continue-training ignored: the data directory is served read-only", "step", step, "of", steps)
		return nil
	}
	if err := srv.Train(steps - step); err != nil {
		return fmt.Errorf("--continue-training: %w", err)
	}
	log.Info(fmt.Sprintf("continuing training in the background: steps %d to %d (progress: GET /v1/train)", step+1, steps),
		"from", step, "to", steps)
	return nil
}

// openOrTrain opens the data directory, or on an empty or missing one first trains the
// corpus with the preset and flags. A directory that cannot take writes (read-only, or a
// full disk) is served read-only, without training, and the log says why.
func (c *ServeCommand) openOrTrain(ctx context.Context, log *slog.Logger) (dir *datadir.Dir, readOnly bool, err error) {
	dir, err = datadir.Open(c.Data, false)
	if errors.Is(err, datadir.ErrNotWritable) || errors.Is(err, datadir.ErrDiskFull) {
		log.Warn("serving read-only: training is off", "err", err.Error())
		dir, err = datadir.Open(c.Data, true)
		return dir, true, err
	}
	if isLocked(err) {
		if srv := findServer(c.Data, c.Token); srv != nil {
			return nil, false, fmt.Errorf("%s is already served at %s (pid %d): open that, or stop it (kill -INT %d) first", c.Data, srv.URL, srv.PID, srv.PID)
		}
		return nil, false, lockedError(c.Data, nil, "")
	}
	if !datadir.IsEmpty(err) {
		if name := c.Hyper.anySet("preset", "corpus"); err == nil && name != "" {
			log.Warn("--"+name+" ignored: the data directory already holds a model", "data", c.Data)
		}
		return dir, false, err
	}
	dir, err = c.firstRun(ctx, log)
	return dir, false, err
}

// firstRun trains the corpus with the preset and flags into an empty data directory.
func (c *ServeCommand) firstRun(ctx context.Context, log *slog.Logger) (*datadir.Dir, error) {
	cfg, err := c.Hyper.config(c.Preset)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return nil, err
	}
	name, text, err := corpora.Load(c.Corpus)
	if err != nil {
		return nil, err
	}
	log.Info("no model yet: training first", "data", c.Data, "corpus", name, "preset", c.Preset)
	dir, tr, err := datadir.Create(c.Data, cfg, text)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	if err := train(ctx, log, dir, tr, tr.Cfg.Steps); err != nil {
		dir.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("training interrupted at step %d of %d; serve it as it is: spotlight serve --data %s; "+
				"finish it while serving: spotlight serve --data %s --continue-training", tr.Step, tr.Cfg.Steps, c.Data, c.Data)
		}
		return nil, err
	}
	return dir, nil
}

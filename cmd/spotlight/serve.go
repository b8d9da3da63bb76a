package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/api"
	"github.com/spotlight-lm/spotlight/api/web"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
)

type serveFlags struct {
	data, addr, token string
	maxQueries        int
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API (training the default corpus first on an empty data directory)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.token == "" {
				f.token = os.Getenv("SPOTLIGHT_TOKEN")
			}
			return runServe(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", "", "data directory (trained on the default corpus if empty or missing)")
	fl.StringVar(&f.addr, "addr", api.DefaultAddr, "listen address; a non-loopback address needs a token")
	fl.StringVar(&f.token, "token", "", "bearer token required on every request but /healthz (default $SPOTLIGHT_TOKEN)")
	fl.IntVar(&f.maxQueries, "max-queries", api.DefaultMaxQueries, "generate/attribute requests at once; more get 429")
	_ = cmd.MarkFlagRequired("data")
	return cmd
}

func runServe(cmd *cobra.Command, f *serveFlags) (rerr error) {
	if err := api.CheckAddr(f.addr, f.token); err != nil {
		return err
	}
	// The heap is dominated by the long-lived memory slabs; Go's default GOGC=100 would let
	// it grow to twice their size before collecting. An explicit GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	dir, err := openOrTrain(cmd, f.data, log)
	if err != nil {
		return err
	}
	// Closing the directory can fail (a disk that stopped taking writes): the exit status says so.
	defer func() { rerr = errors.Join(rerr, dir.Close()) }()
	progress, done := layerBar("indexing")
	err = dir.PrepareMemory(progress)
	done()
	if err != nil {
		return err
	}
	srv, err := api.New(dir, api.Options{Token: f.token, MaxQueries: f.maxQueries, Logger: log, Web: web.Handler()})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := srv.Listen(f.addr)
	if err != nil {
		return err
	}
	log.Info("serving", "addr", "http://"+ln.Addr().String(), "data", f.data, "auth", f.token != "")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-cmd.Context().Done():
	}
	log.Info("shutting down: finishing requests, checkpointing training")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// openOrTrain opens dir, or on an empty or missing dir first trains the embedded default
// corpus with the tiny preset. A directory that cannot take writes (read-only, or a full
// disk) is served read-only, without training, and the log says why.
func openOrTrain(cmd *cobra.Command, data string, log *slog.Logger) (*datadir.Dir, error) {
	dir, err := datadir.Open(data, false)
	if errors.Is(err, dualmem.ErrNotWritable) || errors.Is(err, dualmem.ErrDiskFull) {
		log.Warn("serving read-only: training is off", "err", err.Error())
		return datadir.Open(data, true)
	}
	if !datadir.IsEmpty(err) {
		return dir, err
	}
	fmt.Fprintf(os.Stderr, "%s holds no model: training the default corpus (%s) with the tiny preset first\n", data, corpora.DefaultName)
	cfg, err := lm.Preset("tiny")
	if err != nil {
		return nil, err
	}
	_, text, err := corpora.Load(corpora.DefaultName)
	if err != nil {
		return nil, err
	}
	dir, tr, err := datadir.Create(data, cfg, text)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	if err := train(cmd.Context(), dir, tr, tr.Cfg.Steps); err != nil {
		dir.Close()
		if errors.Is(err, cmd.Context().Err()) || cmd.Context().Err() != nil {
			return nil, fmt.Errorf("training interrupted at step %d; run serve again to serve it, or train --resume", tr.Step)
		}
		return nil, err
	}
	return dir, nil
}

// newHealthcheckCmd probes a running server's /healthz: the Docker HEALTHCHECK, since the
// runtime image has no shell, curl or wget.
func newHealthcheckCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 if the server at --addr answers GET /healthz with 200",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client := http.Client{Timeout: 5 * time.Second}
			resp, err := client.Get("http://" + addr + "/healthz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("healthz: %s", resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", api.DefaultAddr, "server address")
	return cmd
}

// layerBar is a progress bar on stderr for work done per layer and step; done clears it.
func layerBar(verb string) (progress func(layer string, done, total int), done func()) {
	var bar *progressbar.ProgressBar
	progress = func(layer string, step, total int) {
		if bar == nil {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond),
				progressbar.OptionClearOnFinish())
		}
		bar.Describe(verb + " " + layer)
		if step == 1 {
			bar.Reset()
		}
		_ = bar.Set(step)
	}
	return progress, func() {
		if bar != nil {
			_ = bar.Finish()
		}
	}
}

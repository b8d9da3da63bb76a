// Command spotlight trains a small character-level language model, records the dual form of
// its linear layers at every step, and shows which training tokens each prediction used.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/lm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "spotlight: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var verbose bool
	root := &cobra.Command{
		Use:           "spotlight",
		Short:         "See which training tokens a language model attends to when it predicts",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "debug logging on stderr")
	root.AddCommand(newTrainCmd(), newVerifyCmd(), newStatsCmd(), newEvalCmd(), newBenchCmd(), newServeCmd(), newHealthcheckCmd(), newGenerateCmd())
	return root
}

// openModel opens a data directory read-only with its last checkpoint loaded; closeAll
// releases both.
func openModel(data string) (dir *datadir.Dir, m *lm.Model, closeAll func(), err error) {
	if dir, err = datadir.Open(data, true); err != nil {
		return nil, nil, nil, err
	}
	if m, err = dir.Model(); err != nil {
		dir.Close()
		return nil, nil, nil, err
	}
	return dir, m, func() { m.Close(); dir.Close() }, nil
}

// printJSON writes v as the command's one JSON document on stdout.
func printJSON(v any) error { return json.NewEncoder(os.Stdout).Encode(v) }

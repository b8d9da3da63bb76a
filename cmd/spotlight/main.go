// Command spotlight trains a small character-level language model, records the dual form of
// its linear layers at every step, and shows which training tokens each prediction used.
//
// Each subcommand is an XCommand type in its own file: its fields are the options its flags
// fill, and its Run(ctx) does the work through the library packages; newXCmd binds the flags.
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
		Use:   "spotlight",
		Short: "See which training tokens a language model attends to when it predicts",
		Example: `  spotlight serve --data ./data
  spotlight train --data ./d --preset small --steps 4000
  spotlight generate --data ./d --prompt "The light "`,
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
	group(root)
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "debug logging on stderr")
	root.AddCommand(newTrainCmd(), newVerifyCmd(), newStatsCmd(), newCounterfactualCmd(), newInfluenceCmd(), newEvalCmd(), newBenchCmd(), newServeCmd(), newHealthcheckCmd(), newGenerateCmd())
	return root
}

// group makes cmd a command that only holds subcommands: without arguments it prints its
// help, and an unknown subcommand is one line with cobra's suggestion, if any.
func group(cmd *cobra.Command) {
	cmd.SuggestionsMinimumDistance = 2
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			return fmt.Errorf("unknown command %q; did you mean %q?", args[0], s[0])
		}
		return fmt.Errorf("unknown command %q (see %s --help)", args[0], cmd.CommandPath())
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// checkData refuses a --data path that exists but is not a directory.
func checkData(path string) error {
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		return fmt.Errorf("--data %s is a file, not a directory", path)
	}
	return nil
}

// openModel opens a data directory read-only with its last checkpoint loaded; closeAll
// releases both.
func openModel(data string) (dir *datadir.Dir, m *lm.Model, closeAll func(), err error) {
	if err := checkData(data); err != nil {
		return nil, nil, nil, err
	}
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

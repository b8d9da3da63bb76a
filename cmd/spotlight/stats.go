package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/api"
	"github.com/spotlight-lm/spotlight/datadir"
)

// StatsCommand shows a data directory's config, progress and memory size.
type StatsCommand struct {
	Data  string
	Token string // the bearer token of a server that holds Data
	JSON  bool
}

func newStatsCmd() *cobra.Command {
	c := &StatsCommand{}
	cmd := &cobra.Command{
		Use:     "stats",
		Short:   "Show the model config, training progress and memory size of a data directory",
		Example: "  spotlight stats --data ./d\n  spotlight stats --data ./d --json",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	cmd.Flags().StringVar(&c.Data, "data", "", "data directory (held by a running serve: asked through its API)")
	cmd.Flags().StringVar(&c.Token, "token", "", "bearer token of the server that holds --data (default $SPOTLIGHT_TOKEN)")
	cmd.Flags().BoolVar(&c.JSON, "json", false, "print one JSON document (through a server: its GET /v1/model)")
	_ = cmd.MarkFlagRequired("data")
	return cmd
}

// Run reads the statistics and prints them.
func (c *StatsCommand) Run(context.Context) error {
	if err := checkData(c.Data); err != nil {
		return err
	}
	dir, err := datadir.Open(c.Data, true)
	if isLocked(err) {
		return c.viaServer()
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	st, err := dir.Stats()
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(st)
	}
	printStats(st)
	return nil
}

// viaServer reads the statistics from the server that holds the data directory: GET
// /v1/model, and the last step's train loss from GET /v1/steps/{step}. The server computes
// a held-out loss only when it trains.
func (c *StatsCommand) viaServer() error {
	srv := findServer(c.Data, tokenOr(c.Token))
	if srv == nil {
		return lockedError(c.Data, nil, "")
	}
	srv.note("statistics")
	var info api.ModelInfo
	var raw []byte
	if err := srv.do("GET", "/v1/model", nil, &info, &raw); err != nil {
		return err
	}
	if c.JSON {
		_, err := os.Stdout.Write(raw)
		return err
	}
	st := &datadir.Stats{Config: info.Config, Step: info.Step, Precision: info.Config.Precision, Layers: info.Layers, DiskBytes: info.MemoryBytes,
		Kept: info.KeptCheckpoints, KeptBytes: info.KeptBytes}
	if info.Step > 0 {
		var step api.StepInfo
		if err := srv.do("GET", fmt.Sprintf("/v1/steps/%d", info.Step), nil, &step, nil); err != nil {
			return err
		}
		st.LastLoss = float32(step.Loss)
	}
	st.EvalLoss = math.NaN()
	if info.Training.EvalLoss != nil {
		st.EvalLoss = *info.Training.EvalLoss
	}
	printStats(st)
	return nil
}

func printStats(st *datadir.Stats) {
	c := st.Config
	fmt.Printf("model: d=%d blocks=%d heads=%d ctx=%d vocab=%d (preset %s)\n", c.D, c.Blocks, c.Heads, c.Ctx, c.Vocab, c.Preset)
	fmt.Printf("optimizer: lr=%g momentum=%g weight-decay=%g clip=%g warmup=%d batch=%d\n",
		c.LR, c.Momentum, c.WeightDecay, c.Clip, c.Warmup, c.Batch)
	heldOut := fmt.Sprintf("%.3f (%s)", st.EvalLoss, heldOutWindows(c))
	if math.IsNaN(st.EvalLoss) {
		heldOut = "not computed by the server until it trains"
	}
	fmt.Printf("steps: %d of %d, train loss %.3f (last step's batch), held-out loss %s\n", st.Step, c.Steps, st.LastLoss, heldOut)
	if st.SplitLoss != nil {
		fmt.Printf("held-out split loss %.4f (all %d tokens of the held-out split's whole batches)\n", *st.SplitLoss, st.SplitTokens)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "layer\td_in\td_out\tentries\tbytes\t")
	for _, l := range st.Layers {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t\n", l.Name, l.DIn, l.DOut, l.Entries, l.Bytes)
	}
	_ = w.Flush()
	fmt.Printf("directory on disk: %d bytes (%s)\n", st.DiskBytes, st.Precision)
	switch {
	case st.Kept == nil:
	case len(st.Kept) == 0:
		fmt.Println("checkpoints kept for retraining: none (spotlight train keeps them: --checkpoint-keep-every)")
	default:
		steps := make([]string, len(st.Kept))
		for i, k := range st.Kept {
			steps[i] = strconv.Itoa(k.Step)
		}
		fmt.Printf("checkpoints kept for retraining: %d, %d bytes (steps %s)\n", len(st.Kept), st.KeptBytes, strings.Join(steps, " "))
	}
}

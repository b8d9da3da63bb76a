package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/datadir"
)

// StatsCommand shows a data directory's config, progress and memory size.
type StatsCommand struct {
	Data string
	JSON bool
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
	cmd.Flags().StringVar(&c.Data, "data", "", "data directory")
	cmd.Flags().BoolVar(&c.JSON, "json", false, "print one JSON document")
	_ = cmd.MarkFlagRequired("data")
	return cmd
}

// Run reads the statistics and prints them.
func (c *StatsCommand) Run(context.Context) error {
	if err := checkData(c.Data); err != nil {
		return err
	}
	dir, err := datadir.Open(c.Data, true)
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

func printStats(st *datadir.Stats) {
	c := st.Config
	fmt.Printf("model: d=%d blocks=%d heads=%d ctx=%d vocab=%d (preset %s)\n", c.D, c.Blocks, c.Heads, c.Ctx, c.Vocab, c.Preset)
	fmt.Printf("optimizer: lr=%g momentum=%g weight-decay=%g clip=%g warmup=%d batch=%d\n",
		c.LR, c.Momentum, c.WeightDecay, c.Clip, c.Warmup, c.Batch)
	fmt.Printf("steps: %d of %d, last loss %.4f, eval loss %.4f\n", st.Step, c.Steps, st.LastLoss, st.EvalLoss)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "layer\td_in\td_out\tentries\tbytes\t")
	for _, l := range st.Layers {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t\n", l.Name, l.DIn, l.DOut, l.Entries, l.Bytes)
	}
	_ = w.Flush()
	fmt.Printf("directory on disk: %d bytes (%s)\n", st.DiskBytes, st.Precision)
}

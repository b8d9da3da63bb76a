package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/datadir"
)

// InfluenceCommand prints the exact influence of the training tokens on one prediction.
type InfluenceCommand struct {
	Data     string
	Step     int
	Text     string
	Position int
	TopK     int
	JSON     bool
}

func newInfluenceCmd() *cobra.Command {
	c := &InfluenceCommand{}
	cmd := &cobra.Command{
		Use:   "influence",
		Short: "Rank the training tokens by their exact influence on one prediction (replays the run)",
		Long: "Differentiates the loss of one token after training with respect to the loss weight of every\n" +
			"training token, through every recorded SGD step (momentum, weight decay, clipping, schedule\n" +
			"included), replaying the run from its kept checkpoints. Prints the tokens of largest |influence|,\n" +
			"the most supporting (removing them raises the loss most) and the most opposing, each with its\n" +
			"predicted loss change if it had not been trained on.",
		Example: "  spotlight influence --data ./d --text 'the light of the sun' --position 12\n" +
			"  spotlight influence --data ./d --text 'the light' --position 4 --top-k 20 --step 400 --json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Data, "data", "", "data directory")
	fl.IntVar(&c.Step, "step", 0, "the model after this step: a kept checkpoint's or the last (default the last)")
	fl.StringVar(&c.Text, "text", "", "the text the token is in")
	fl.IntVar(&c.Position, "position", 0, "the token: the character of --text at this index (from 1)")
	fl.IntVar(&c.TopK, "top-k", 10, fmt.Sprintf("training tokens listed per ranking (1..%d)", datadir.MaxInfluenceTopK))
	fl.BoolVar(&c.JSON, "json", false, "print one JSON document")
	_ = cmd.MarkFlagRequired("data")
	_ = cmd.MarkFlagRequired("text")
	_ = cmd.MarkFlagRequired("position")
	return cmd
}

// Run replays the run backwards and prints the rankings.
func (c *InfluenceCommand) Run(ctx context.Context) error {
	if c.TopK < 1 || c.TopK > datadir.MaxInfluenceTopK {
		return fmt.Errorf("--top-k %d outside 1..%d", c.TopK, datadir.MaxInfluenceTopK)
	}
	if err := checkData(c.Data); err != nil {
		return err
	}
	dir, err := datadir.Open(c.Data, true)
	if isLocked(err) {
		return lockedError(c.Data, findServer(c.Data, tokenOr("")), "")
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	step := c.Step
	if step == 0 {
		step = dir.Steps()
	}
	var bar *progress
	a, err := dir.Influence(ctx, step, c.Text, c.Position, c.TopK, func(done, total int) {
		if bar == nil {
			bar = newProgress(nil, "influence (reversing steps)", total)
		}
		bar.Set(done)
	})
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(a)
	}
	fmt.Printf("token %q at position %d, model at step %d: loss %.4f (p = %.5g); %d training tokens scored in %.1fs (snapshots %v)\n",
		a.Token, a.Position, a.Step, a.Loss, a.Prob, a.Scored, a.Seconds, a.Snapshots)
	for _, r := range []struct {
		name   string
		tokens []datadir.InfluenceToken
		delta  float64
	}{
		{"largest |influence|", a.Top, a.DeltaLossTop},
		{"supporting (removing raises the loss)", a.Supporting, a.DeltaLossSupporting},
		{"opposing (removing lowers the loss)", a.Opposing, a.DeltaLossOpposing},
	} {
		fmt.Printf("\n%s: removing all %d, predicted Δloss %+.4g\n", r.name, len(r.tokens), r.delta)
		fmt.Printf("  %6s %4s %4s %9s %12s  %s\n", "step", "row", "pos", "offset", "Δloss", "context → target")
		for _, t := range r.tokens {
			fmt.Printf("  %6d %4d %4d %9d %+12.4g  %q → %q\n", t.Step, t.Row, t.Pos, t.Offset, t.DeltaLoss, t.Context, t.Target)
		}
	}
	return nil
}

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/api"
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
	Token    string
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
			"predicted loss change if it had not been trained on. Beside a running server it asks the server\n" +
			"(POST /v1/influence), which answers about the checkpoint it serves.",
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
	fl.StringVar(&c.Token, "token", "", "bearer token of a running server that holds --data (default $SPOTLIGHT_TOKEN)")
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
	var a *datadir.InfluenceAnswer
	dir, err := datadir.Open(c.Data, true)
	switch {
	case isLocked(err):
		if a, err = c.viaServer(ctx); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		defer dir.Close()
		step := c.Step
		if step == 0 {
			step = dir.Steps()
		}
		var bar *progress
		a, err = dir.Influence(ctx, step, c.Text, c.Position, c.TopK, func(done, total int) {
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
	}
	return c.print(a)
}

// viaServer asks the server that holds the data directory (POST /v1/influence) and polls
// the job, cancelling it when ctx ends; the server answers about the checkpoint it serves.
func (c *InfluenceCommand) viaServer(ctx context.Context) (*datadir.InfluenceAnswer, error) {
	srv := findServer(c.Data, tokenOr(c.Token))
	if srv == nil {
		return nil, lockedError(c.Data, nil, "")
	}
	var info struct{ Step int }
	if err := srv.do("GET", "/healthz", nil, &info, nil); err != nil {
		return nil, err
	}
	if c.Step != 0 && c.Step != info.Step {
		return nil, lockedError(c.Data, srv, fmt.Sprintf("it serves step %d: leave out --step to ask about that one", info.Step))
	}
	srv.note("ranking by influence")
	var job api.InfluenceJob
	req := api.InfluenceRequest{Text: c.Text, Position: c.Position, TopK: c.TopK}
	if err := srv.do("POST", "/v1/influence", req, &job, nil); err != nil {
		return nil, err
	}
	var bar *progress
	for job.Status == api.JobQueued || job.Status == api.JobRunning {
		select {
		case <-ctx.Done():
			_ = srv.do("DELETE", "/v1/influence/"+job.ID, nil, nil, nil)
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if err := srv.do("GET", "/v1/influence/"+job.ID, nil, &job, nil); err != nil {
			return nil, err
		}
		if bar == nil {
			bar = newProgress(nil, "influence on the server (reversing steps)", 1000)
		}
		bar.Set(int(1000 * job.Progress))
	}
	if bar != nil {
		bar.Finish()
	}
	if job.Status != api.JobDone || job.Result == nil {
		return nil, fmt.Errorf("the server's influence job %s %s: %s", job.ID, job.Status, job.Error)
	}
	return answerOf(job), nil
}

// answerOf is a finished job as the answer the command prints without a server.
func answerOf(job api.InfluenceJob) *datadir.InfluenceAnswer {
	r := job.Result
	tokens := func(ts []api.InfluenceToken) []datadir.InfluenceToken {
		out := make([]datadir.InfluenceToken, len(ts))
		for i, t := range ts {
			out[i] = datadir.InfluenceToken{Step: t.Step, Row: t.Row, Pos: t.Pos, Offset: t.Offset, Context: t.Context,
				Target: t.Target, Score: t.Influence, DeltaLoss: t.DeltaLoss}
		}
		return out
	}
	return &datadir.InfluenceAnswer{Step: r.Checkpoint, Text: job.Text, Position: job.Position, Token: job.Token,
		Loss: r.Loss, Prob: r.Prob, Snapshots: r.Snapshots, Scored: r.Scored,
		Top: tokens(r.Top), Supporting: tokens(r.Supporting), Opposing: tokens(r.Opposing),
		DeltaLossTop: r.PredictedDeltaLoss, DeltaLossSupporting: r.PredictedDeltaLossSupporting,
		DeltaLossOpposing: r.PredictedDeltaLossOpposing, Seconds: r.Seconds, Cached: r.Cached}
}

// print writes the answer on stdout, as JSON with --json.
func (c *InfluenceCommand) print(a *datadir.InfluenceAnswer) error {
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

package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/datadir"
)

// CounterfactualCommand checks the memory's counterfactual for one token by retraining
// without the training tokens it names.
type CounterfactualCommand struct {
	Data     string
	Text     string
	Position int
	TopK     int
	RankBy   string
	Tokens   string // step:row:pos,...
	JSON     bool
}

// counterfactualDoc is the command's JSON document.
type counterfactualDoc struct {
	Step          int                  `json:"step"`
	Text          string               `json:"text"`
	Position      int                  `json:"position"`
	Token         string               `json:"token"`
	Removed       []datadir.TrainToken `json:"removed"`
	Prob          float64              `json:"prob"`
	LogP          float64              `json:"logp"`
	PredictedProb float64              `json:"predicted_prob"`
	PredictedLogP float64              `json:"predicted_logp"`
	RealProb      float64              `json:"real_prob"`
	RealLogP      float64              `json:"real_logp"`
	FromStep      int                  `json:"from_step"`
	ReplayedSteps int                  `json:"replayed_steps"`
	Seconds       float64              `json:"seconds"`
}

func newCounterfactualCmd() *cobra.Command {
	c := &CounterfactualCommand{}
	cmd := &cobra.Command{
		Use:   "counterfactual",
		Short: "Check the memory's counterfactual for one token by retraining without its top training tokens",
		Long: "Removes training tokens from one prediction two ways and prints both probabilities: the memory's\n" +
			"(the final weights minus those tokens' updates, the rest of training unchanged) and the real one\n" +
			"(training replayed from the nearest kept checkpoint before the earliest of them, without them).",
		Example: "  spotlight counterfactual --data ./d --text 'the light of the sun' --position 12 --top-k 10\n" +
			"  spotlight counterfactual --data ./d --text 'the light' --position 4 --tokens 17:3:40,120:0:5 --json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Data, "data", "", "data directory")
	fl.StringVar(&c.Text, "text", "", "the text the token is in")
	fl.IntVar(&c.Position, "position", 0, "the token: the character of --text at this index (from 1)")
	fl.IntVar(&c.TopK, "top-k", 0, "remove the token's top k training tokens (out layer)")
	fl.StringVar(&c.RankBy, "rank-by", "", "ranking of the top k: contribution (default), margin, logp or attention")
	fl.StringVar(&c.Tokens, "tokens", "", "remove these training tokens instead: step:row:pos, comma-separated")
	fl.BoolVar(&c.JSON, "json", false, "print one JSON document")
	_ = cmd.MarkFlagRequired("data")
	_ = cmd.MarkFlagRequired("text")
	_ = cmd.MarkFlagRequired("position")
	return cmd
}

// parseTokens reads step:row:pos,... .
func parseTokens(s string) ([]datadir.TrainToken, error) {
	var out []datadir.TrainToken
	for _, f := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(f), ":")
		var n [3]int
		var err error
		for i := range n {
			if len(parts) != 3 {
				break
			}
			if n[i], err = strconv.Atoi(parts[i]); err != nil {
				break
			}
		}
		if len(parts) != 3 || err != nil {
			return nil, fmt.Errorf("--tokens: %q is not step:row:pos", f)
		}
		out = append(out, datadir.TrainToken{Step: n[0], Row: n[1], Pos: n[2]})
	}
	return out, nil
}

// Run predicts from the memory, retrains, and prints both.
func (c *CounterfactualCommand) Run(ctx context.Context) error {
	if (c.TopK > 0) == (c.Tokens != "") || c.TopK < 0 {
		return fmt.Errorf("say what to remove: --top-k K or --tokens, not both")
	}
	var tokens []datadir.TrainToken
	if c.Tokens != "" {
		var err error
		if tokens, err = parseTokens(c.Tokens); err != nil {
			return err
		}
	}
	if err := checkData(c.Data); err != nil {
		return err
	}
	dir, err := datadir.Open(c.Data, true)
	if isLocked(err) {
		return lockedError(c.Data, findServer(c.Data, tokenOr("")),
			"POST /v1/counterfactual retrains on the server (the page's \"check by retraining\")")
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	sn, err := dir.Snapshot()
	if err != nil {
		return err
	}
	defer sn.Close()
	p, err := sn.Counterfactual(ctx, datadir.Question{Text: c.Text, Position: c.Position, TopK: c.TopK, RankBy: c.RankBy, Tokens: tokens})
	if err != nil {
		return err
	}
	var bar *progress
	r, err := dir.Retrain(ctx, sn.Step, c.Text, c.Position, p.Removed, func(done, total int) {
		if bar == nil {
			bar = newProgress(nil, "retraining", total)
		}
		bar.Set(done)
	})
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	doc := counterfactualDoc{Step: sn.Step, Text: c.Text, Position: c.Position, Token: p.Token, Removed: p.Removed,
		Prob: p.Prob, LogP: math.Log(p.Prob), PredictedProb: p.Predicted, PredictedLogP: math.Log(p.Predicted),
		RealProb: r.Prob, RealLogP: r.LogP, FromStep: r.From, ReplayedSteps: r.Replayed, Seconds: r.Seconds}
	if c.JSON {
		return printJSON(doc)
	}
	fmt.Printf("token %q at position %d, model at step %d: p = %.5g (log p %.4f)\n", doc.Token, doc.Position, doc.Step, doc.Prob, doc.LogP)
	fmt.Printf("without %d training tokens:\n", len(doc.Removed))
	fmt.Printf("  memory (final weights minus those tokens' updates, rest of training unchanged): p = %.5g (Δlog p %+.4f)\n",
		doc.PredictedProb, doc.PredictedLogP-doc.LogP)
	fmt.Printf("  real (retrained without them: %d steps from step %d, %.1fs): p = %.5g (Δlog p %+.4f)\n",
		doc.ReplayedSteps, doc.FromStep, doc.Seconds, doc.RealProb, doc.RealLogP-doc.LogP)
	return nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/dualmem"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// GenerateCommand generates text from a data directory's model and attributes each token.
type GenerateCommand struct {
	Data    string
	Request query.Request
	Layers  string // comma-separated; "" means all captured
	JSON    bool
	Plot    plotFlags
	set     func(flag string) bool // whether the user set a flag
}

func newGenerateCmd() *cobra.Command {
	c := &GenerateCommand{}
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate text and show, per token, the training tokens it drew on",
		Example: `  spotlight generate --data ./d --prompt "The light " --tokens 16
  spotlight generate --data ./d --prompt "Colours " --rank-by attention --layers out --json
  spotlight generate --data ./d --prompt "Rays " --plot timeline.png --plot-token 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c.set = cmd.Flags().Changed
			return c.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	req := &c.Request
	f.StringVar(&c.Data, "data", "", "data directory")
	f.StringVar(&req.Prompt, "prompt", "", "text to continue")
	f.IntVar(&req.Tokens, "tokens", 32, "tokens to generate (1..1024)")
	f.IntVar(&req.TopK, "top-k", 10, "training tokens shown per token and layer (1..1000)")
	f.StringVar(&req.RankBy, "rank-by", "contribution", "ranking: attention (|α|) or contribution (signed effect on the logit)")
	f.StringVar(&c.Layers, "layers", "", "comma-separated layers (default: all captured)")
	f.Float64Var(&req.Temperature, "temperature", 0, "sampling temperature (0 = greedy)")
	f.Uint64Var(&req.Seed, "seed", 0, "sampling seed")
	f.IntVar(&req.Bins, "bins", 20, "timeline bins over training steps")
	f.BoolVar(&c.JSON, "json", false, "print one JSON document")
	f.StringVar(&c.Plot.file, "plot", "", "write a timeline chart (attention mass and contribution over training steps) to FILE.png or FILE.svg")
	f.IntVar(&c.Plot.token, "plot-token", 0, "generated token to plot (index, default the first)")
	f.StringVar(&c.Plot.layer, "plot-layer", "", "layer to plot (default out)")
	_ = cmd.MarkFlagRequired("data")
	_ = cmd.MarkFlagRequired("prompt")
	return cmd
}

// Run checks the request against the model, loads the memory, generates and prints.
func (c *GenerateCommand) Run(ctx context.Context) error {
	req := c.Request
	for flag, v := range map[string]int{"tokens": req.Tokens, "top-k": req.TopK, "bins": req.Bins} {
		if v == 0 && c.set != nil && c.set(flag) {
			return fmt.Errorf("--%s: 0 is out of range", flag)
		}
	}
	if c.Layers != "" {
		for _, l := range strings.Split(c.Layers, ",") {
			req.Layers = append(req.Layers, strings.TrimSpace(l))
		}
	}
	dir, m, closeAll, err := openModel(c.Data)
	if err != nil {
		return err
	}
	defer closeAll()
	// Validate before the (slow) memory load.
	check := req
	if err := check.Normalize(m.Cfg); err != nil {
		return err
	}
	if err := c.Plot.check(check); err != nil {
		return err
	}
	if _, err := m.Tok.Encode(req.Prompt); err != nil {
		return fmt.Errorf("prompt: %w", err)
	}
	eng, err := loadEngine(m, dir.Store)
	if err != nil {
		return err
	}
	defer eng.Close()
	ans, err := eng.Generate(ctx, req)
	if err != nil {
		return err
	}
	if err := c.Plot.write(ans); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(ans)
	}
	printAnswer(os.Stdout, ans, isTTY(os.Stdout))
	return nil
}

// loadEngine loads every layer's memory, reporting progress per layer.
func loadEngine(m *lm.Model, store *dualmem.Store) (*query.Engine, error) {
	var bar *progress
	current := ""
	eng, err := query.NewEngine(m, store, func(layer string, done, total int) {
		switch {
		case bar == nil:
			bar = newProgress(nil, "loading "+layer, total)
			bar.Event("loading "+layer, "of", total)
		case layer != current:
			bar.Restart("loading "+layer, total)
		}
		current = layer
		bar.Set(done)
	})
	if bar != nil {
		bar.Finish()
	}
	return eng, err
}

// printAnswer writes the generated text, then per token and layer the top training
// contexts with the target highlighted (ANSI inverse on a terminal, [brackets] otherwise).
func printAnswer(w io.Writer, a *query.Answer, tty bool) {
	mark := func(s string) string {
		if tty {
			return "\x1b[1;7m" + s + "\x1b[0m"
		}
		return "[" + s + "]"
	}
	clean := func(s string) string { return strings.NewReplacer("\n", "⏎", "\t", "→").Replace(s) }
	fmt.Fprintf(w, "step %d\n%s%s\n", a.Step, a.Prompt, a.Text)
	for _, t := range a.Tokens {
		fmt.Fprintf(w, "\ntoken %d %q  p=%.3f  verbatim %d chars %q (%d in corpus)\n", t.Index, t.Token, t.Prob,
			t.Verbatim.Length, clean(t.Verbatim.Text), t.Verbatim.Count)
		for _, name := range sortedLayers(t.Layers) {
			la := t.Layers[name]
			kind := "exact"
			if la.FirstOrder {
				kind = "first-order"
			}
			fmt.Fprintf(w, "  %s (%s): primal %.6g dual %.6g err %.1e; W0 %.4g bias %.4g +%.4g %.4g; top share %.3f",
				name, kind, la.DualCheck.Primal, la.DualCheck.Dual, la.DualCheck.AbsErr, la.W0Term, la.BiasTerm,
				la.PositiveTotal, la.NegativeTotal, la.TopShare)
			if la.CounterfactualProb != nil {
				fmt.Fprintf(w, "; p without top %.3f", *la.CounterfactualProb)
			}
			fmt.Fprintln(w)
			for _, e := range la.Top {
				fmt.Fprintf(w, "    step %4d row %2d pos %3d  α=%+9.4f  c=%+.3e  %s%s\n", e.Step, e.Row, e.Pos,
					e.Attention, e.Contribution, clean(e.Context), mark(clean(e.Target)))
			}
		}
	}
}

func sortedLayers(m map[string]query.LayerAnswer) []string {
	var out []string
	for k := range m {
		if k != "out" {
			out = append(out, k)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	if _, ok := m["out"]; ok {
		out = append(out, "out")
	}
	return out
}

package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

func newGenerateCmd() *cobra.Command {
	var (
		data   string
		req    query.Request
		def    = query.DefaultGenerate()
		layers string
		asJSON bool
		plot   plotFlags
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate text and show, per token, the training tokens it drew on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if layers != "" {
				for _, l := range strings.Split(layers, ",") {
					req.Layers = append(req.Layers, strings.TrimSpace(l))
				}
			}
			dir, m, closeAll, err := openModel(data)
			if err != nil {
				return err
			}
			defer closeAll()
			// Validate before the (slow) memory load.
			check := req
			if err := check.Normalize(m.Cfg); err != nil {
				return err
			}
			if err := plot.check(check); err != nil {
				return err
			}
			if _, err := m.Tok.Encode(req.Prompt); err != nil {
				return fmt.Errorf("prompt: %w", err)
			}
			var bar *progressbar.ProgressBar
			eng, err := query.NewEngine(m, dir.Store, func(layer string, done, total int) {
				if bar == nil {
					bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(os.Stderr),
						progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond),
						progressbar.OptionClearOnFinish())
				}
				bar.Describe("loading " + layer)
				if done == 1 {
					bar.Reset()
				}
				_ = bar.Set(done)
			})
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			defer eng.Close()
			ans, err := eng.Generate(cmd.Context(), req)
			if err != nil {
				return err
			}
			if err := plot.write(ans); err != nil {
				return err
			}
			if asJSON {
				return printJSON(ans)
			}
			printAnswer(os.Stdout, ans, isTTY(os.Stdout))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "data directory")
	f.StringVar(&req.Prompt, "prompt", "", "text to continue")
	f.IntVar(&req.Tokens, "tokens", def.Tokens, "tokens to generate (1..1024; 0 = default)")
	f.IntVar(&req.TopK, "top-k", def.TopK, "training tokens shown per token and layer (1..1000; 0 = default)")
	f.StringVar(&req.RankBy, "rank-by", def.RankBy, "ranking: attention (|α|) or contribution (signed effect on the logit)")
	f.StringVar(&layers, "layers", "", "comma-separated layers (default: all captured)")
	f.Float64Var(&req.Temperature, "temperature", def.Temperature, "sampling temperature (0 = greedy)")
	f.Uint64Var(&req.Seed, "seed", def.Seed, "sampling seed")
	f.IntVar(&req.Bins, "bins", def.Bins, "timeline bins over training steps (0 = default)")
	f.BoolVar(&asJSON, "json", false, "print one JSON document")
	f.StringVar(&plot.file, "plot", "", "write a timeline chart (attention mass and contribution over training steps) to FILE.png or FILE.svg")
	f.IntVar(&plot.token, "plot-token", 0, "generated token to plot (index, default the first)")
	f.StringVar(&plot.layer, "plot-layer", "", "layer to plot (default out)")
	_ = cmd.MarkFlagRequired("data")
	_ = cmd.MarkFlagRequired("prompt")
	return cmd
}

func isTTY(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
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
		if k != lm.OutLayer {
			out = append(out, k)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	if _, ok := m[lm.OutLayer]; ok {
		out = append(out, lm.OutLayer)
	}
	return out
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/lm"
	"github.com/spotlight-lm/spotlight/query"
)

// GenerateCommand generates text from a data directory's model and attributes each token.
type GenerateCommand struct {
	Data    string
	Token   string // the bearer token of a server that holds Data
	Request query.Request
	Layers  string // comma-separated; "" means all captured
	Steps   string // FROM-TO; "" means all
	Format  string // one of formats; --json is --format json
	Plot    plotFlags
}

// formats are generate's --format values: text for people, the rest for tools.
var formats = []string{"text", "json", "jsonl", "csv"}

func newGenerateCmd() *cobra.Command {
	c := &GenerateCommand{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate text and show, per token, the training tokens it drew on",
		Example: `  spotlight generate --data ./d --prompt "The light " --tokens 16
  spotlight generate --data ./d --prompt "Colours " --rank-by attention --layers out --json
  spotlight generate --data ./d --prompt "Rays " --plot timeline.png --plot-token 2
  spotlight generate --data ./d --prompt "The light " --format csv > light.csv   # one row per token × layer × entry`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if asJSON {
			if cmd.Flags().Changed("format") && c.Format != "json" {
				return fmt.Errorf("--json and --format %s disagree: give one", c.Format)
			}
			c.Format = "json"
		}
		return c.Run(cmd.Context())
	}
	f := cmd.Flags()
	req := &c.Request
	f.StringVar(&c.Data, "data", "", "data directory (held by a running serve: asked through its API)")
	f.StringVar(&c.Token, "token", "", "bearer token of the server that holds --data (default $SPOTLIGHT_TOKEN)")
	f.StringVar(&req.Prompt, "prompt", "", "text to continue")
	def := query.DefaultGenerate()
	f.IntVar(&req.Tokens, "tokens", def.Tokens, "tokens to generate (1..1024; 0 = default)")
	f.IntVar(&req.TopK, "top-k", def.TopK, "training tokens shown per token and layer (1..1000; 0 = default)")
	f.StringVar(&req.RankBy, "rank-by", def.RankBy, "ranking: "+strings.Join(query.Rankings, ", ")+
		" (contribution to the logit, to its margin over the runner-up, to log p, or |α|)")
	f.StringVar(&req.GroupBy, "group-by", def.GroupBy, "top list order: "+strings.Join(query.Groupings, ", ")+
		" (pattern: the training tokens that shared the most context first)")
	f.IntVar(&req.Passages, "passages", def.Passages, "training passages (sentences) shown per token and layer (1..50; 0 = default)")
	f.StringVar(&c.Steps, "steps", "", "only training steps FROM-TO, e.g. 1-500 (default: all)")
	f.StringVar(&c.Layers, "layers", "", "comma-separated layers (default: all captured)")
	req.Temperature = def.Temperature
	f.Float64Var(req.Temperature, "temperature", *def.Temperature, "sampling temperature, seeded by --seed (0 = greedy)")
	f.Uint64Var(&req.Seed, "seed", def.Seed, "sampling seed")
	f.IntVar(&req.Bins, "bins", def.Bins, "timeline bins over training steps (0 = default)")
	f.StringVar(&req.Scan, "scan", def.Scan, "scan: "+strings.Join(query.ScanModes, ", ")+
		" (pruned: totals, timeline and dual check from per-step aggregates without reading keys; figures that need every key are left out)")
	f.BoolVar(&asJSON, "json", false, "print one JSON document (same as --format json)")
	f.StringVar(&c.Format, "format", "text", "output: "+strings.Join(formats, ", ")+
		" (jsonl and csv: one row per token × layer × top entry, columns "+strings.Join(query.ExportColumns, ",")+")")
	f.StringVar(&c.Plot.file, "plot", "", "write a timeline chart (attention mass and contribution over training steps) to FILE.png or FILE.svg")
	f.IntVar(&c.Plot.token, "plot-token", 0, "generated token to plot (index, default the first)")
	f.StringVar(&c.Plot.layer, "plot-layer", "", "layer to plot (default out)")
	_ = cmd.MarkFlagRequired("data")
	_ = cmd.MarkFlagRequired("prompt")
	return cmd
}

// Run checks the request against the model, loads the memory, generates and prints.
func (c *GenerateCommand) Run(ctx context.Context) error {
	if !slices.Contains(formats, c.Format) {
		return fmt.Errorf("--format %q: want one of %s", c.Format, strings.Join(formats, ", "))
	}
	req := c.Request
	if c.Steps != "" {
		var from, to int
		if _, err := fmt.Sscanf(c.Steps, "%d-%d", &from, &to); err != nil {
			return fmt.Errorf("--steps %q: want FROM-TO, e.g. 1-500", c.Steps)
		}
		req.Steps = []int{from, to}
	}
	if c.Layers != "" {
		for _, l := range strings.Split(c.Layers, ",") {
			req.Layers = append(req.Layers, strings.TrimSpace(l))
		}
	}
	dir, m, closeAll, err := openModel(c.Data)
	if isLocked(err) {
		return c.viaServer(req)
	}
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
	eng, err := loadEngine(m, dir)
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
	return c.print(ans)
}

// viaServer asks the server that holds the data directory (POST /v1/generate), which
// validates the request itself.
func (c *GenerateCommand) viaServer(req query.Request) error {
	srv := findServer(c.Data, tokenOr(c.Token))
	if srv == nil {
		return lockedError(c.Data, nil, "")
	}
	if c.Plot.file != "" {
		return lockedError(c.Data, srv, "--plot needs the directory itself; the server draws the same chart at "+srv.URL+"/v1/plots/timeline.png?prompt=…")
	}
	srv.note("generating")
	var ans query.Answer
	var raw []byte
	if err := srv.do("POST", "/v1/generate", req, &ans, &raw); err != nil {
		return err
	}
	if c.Format == "json" {
		_, err := os.Stdout.Write(raw)
		return err
	}
	return c.print(&ans)
}

// print writes the answer on stdout in c.Format.
func (c *GenerateCommand) print(ans *query.Answer) error {
	switch c.Format {
	case "json":
		return printJSON(ans)
	case "jsonl":
		return query.WriteJSONL(os.Stdout, ans)
	case "csv":
		return query.WriteCSV(os.Stdout, ans)
	}
	printAnswer(os.Stdout, ans, isTTY(os.Stdout))
	return nil
}

// loadEngine loads every layer's memory, reporting progress per layer.
func loadEngine(m *lm.Model, dir *datadir.Dir) (*query.Engine, error) {
	report, finish := layerProgress(nil, "loading")
	defer finish()
	return dir.Engine(m, report)
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
	fmt.Fprintf(w, "step %d, %s\n%s%s\n", a.Step, decoding(a.Sampling), a.Prompt, a.Text)
	for _, t := range a.Tokens {
		fmt.Fprintf(w, "\ntoken %d %q  p=%.3f  verbatim %d chars %q (%d in corpus)\n", t.Index, t.Token, t.Prob,
			t.Verbatim.Length, clean(t.Verbatim.Text), t.Verbatim.Count)
		for _, name := range sortedLayers(t.Layers) {
			la := t.Layers[name]
			kind := "exact"
			if la.FirstOrder {
				kind = "first-order"
			}
			fmt.Fprintf(w, "  %s (%s): primal %.6g dual %.6g err %.1e; W0 %.4g bias %.4g %s %s; top share %s",
				name, kind, la.DualCheck.Primal, la.DualCheck.Dual, la.DualCheck.AbsErr, la.W0Term, la.BiasTerm,
				figure("+%.4g", la.PositiveTotal), figure("%.4g", la.NegativeTotal), figure("%.3f", la.TopShare))
			if la.Scan.Mode == query.ScanPruned {
				fmt.Fprintf(w, "; pruned scan read %s of %s of keys and gradients", query.FormatBytes(la.Scan.BytesRead),
					query.FormatBytes(la.Scan.BytesTotal))
			}
			if la.CounterfactualProb != nil {
				fmt.Fprintf(w, "; p with the top's updates removed, rest of training unchanged %.3f", *la.CounterfactualProb)
			}
			fmt.Fprintln(w)
			printPatterns(w, t.Token, la, clean)
			for _, p := range la.Passages {
				fmt.Fprintf(w, "    passage [%d,%d) c=%+.4g (%d tokens): %s\n", p.Start, p.End, p.Contribution, p.Count, clean(p.Text))
			}
			for _, e := range la.Top {
				fmt.Fprintf(w, "    step %4d row %2d pos %3d  α=%+9.4f  c=%+.3e  %s%s\n", e.Step, e.Row, e.Pos,
					e.Attention, e.Contribution, clean(e.Context), mark(clean(e.Target)))
			}
		}
	}
}

// figure formats a figure the answer may have omitted.
func figure(format string, v *float64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *v)
}

// decoding says how a text was decoded, with the flags that reproduce or change it.
func decoding(s *query.Sampling) string {
	switch {
	case s == nil:
		return "scored text"
	case s.Method == query.MethodGreedy:
		return "greedy decoding (--temperature 0)"
	}
	return fmt.Sprintf("sampled at --temperature %g --seed %d (--temperature 0: greedy)", s.Temperature, s.Seed)
}

// printPatterns says, for the longest few contexts the query shares with training tokens,
// how many there were, how many were followed by the token, and what they gave.
func printPatterns(w io.Writer, token string, la query.LayerAnswer, clean func(string) string) {
	shown := 0
	for i := len(la.Patterns) - 1; i >= 1 && shown < 4; i-- {
		p := la.Patterns[i]
		if i+1 < len(la.Patterns) && la.Patterns[i+1].Count == p.Count {
			continue // the same tokens as the longer context above
		}
		fmt.Fprintf(w, "    after %q: %d training tokens (%d followed by %q) gave %+.4g\n", clean(p.Suffix), p.Count,
			p.SameTarget, clean(token), p.Contribution)
		shown++
	}
	if len(la.Patterns) > 0 {
		p := la.Patterns[0]
		fmt.Fprintf(w, "    all %d training tokens gave %+.4g of %s %.4g\n", p.Count, p.Contribution, la.Objective, la.DualCheck.Primal)
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

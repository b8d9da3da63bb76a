package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/bench/sweep"
)

// BenchMemoryCommand is the size sweep (package sweep): one layer of a trained memory
// tiled on disk to each size, then the same requests timed on each, beside numpy over
// the same files.
type BenchMemoryCommand struct {
	sweep.Config
	JSON     string // also write the document here
	Markdown string // also write the table here
}

func newBenchMemoryCmd() *cobra.Command {
	c := &BenchMemoryCommand{}
	var measure, render string
	var m sweep.MeasureOpts // the hidden --measure flags: be the measuring process
	cmd := &cobra.Command{
		Use:   "memory",
		Short: "Size sweep: requests on a trained layer tiled on disk to each size, beside numpy over the same files",
		Example: `  spotlight bench memory --source /tmp/mem-default --sizes 1M,4M,16M --all-layer --json sweep.json --markdown sweep.md
  spotlight bench memory --source ./d --sizes 200K --reps 3 --cold off --python off
  spotlight bench memory --source /tmp/mem-default --sizes 64M --segments-only on --reps 1 --python off`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if render != "" {
				return renderMemTable(render)
			}
			if measure != "" {
				m.Dir, m.Reps, m.Prompt, m.Seed = measure, c.Reps, c.Prompt, 1
				if m.ColdReps = c.ColdReps; m.ColdReps <= 0 {
					m.ColdReps = c.Reps
				}
				run, err := sweep.Measure(cmd.Context(), m)
				if err != nil {
					return err
				}
				return printJSON(run)
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			c.Child = []string{exe, "bench", "memory"}
			doc, err := c.Run(cmd.Context())
			if err != nil {
				return err
			}
			return c.print(doc)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Source, "source", "", "trained data directory whose layer is tiled (only read)")
	fl.StringVar(&c.Layer, "layer", "out", "layer to tile")
	fl.StringVar(&c.Sizes, "sizes", "1M,4M,16M", "training tokens of each tiled memory (K and M suffixes: 1M = 1,000,000; empty: none)")
	fl.StringVar(&c.Scratch, "scratch", os.TempDir(), "directory for the tiled memories (each is removed when measured)")
	fl.IntVar(&c.Reps, "reps", 5, "timed requests of each shape, after one warm-up")
	fl.IntVar(&c.ColdReps, "cold-reps", 0, "timed cold requests of each shape (0: as --reps)")
	fl.StringVar(&c.Cold, "cold", "auto", "also time requests with the page cache dropped before each: on, off, or auto (when root)")
	fl.StringVar(&c.SegmentsOnly, "segments-only", "auto",
		"build a synthetic memory whose keys and gradients are in the segment files alone, not the database too: on, off, or auto (a size whose full build would not fit the disk)")
	fl.BoolVar(&c.AllLayer, "all-layer", false, "also time the all-layer request on a copy of --source")
	fl.StringVar(&c.Prompt, "prompt", "The rays of light", "prompt of every request")
	fl.StringVar(&c.Python, "python", "python3", "Python interpreter with numpy for the reference scan (name on PATH or a path), or off")
	fl.Float64Var(&c.SpareGB, "spare-gb", 10, "skip a size that would leave less free disk than this")
	fl.StringVar(&c.JSON, "json", "", "write the JSON document to this file (it is always printed)")
	fl.StringVar(&c.Markdown, "markdown", "", "write the markdown table to this file (it is always printed)")
	fl.StringVar(&render, "render", "", "print the markdown table of a JSON document this command wrote, and stop")
	fl.StringVar(&measure, "measure", "", "measure this data directory and print its JSON (the sweep's child process)")
	fl.StringSliceVar(&m.Layers, "measure-layers", nil, "layers the measured requests ask for")
	fl.IntVar(&m.Tokens, "measure-tokens", 32, "tokens of each measured request")
	fl.BoolVar(&m.Cold, "measure-cold", false, "also time the requests cold")
	fl.StringVar(&m.Queries, "measure-queries", "", "write the request's queries here for the numpy reference")
	fl.BoolVar(&m.StartupOnly, "measure-startup-only", false, "measure start-up only (its time and RSS), no request")
	for _, h := range []string{"render", "measure", "measure-layers", "measure-tokens", "measure-cold", "measure-queries", "measure-startup-only"} {
		_ = fl.MarkHidden(h)
	}
	return cmd
}

// print prints the document and its table, and writes them where asked.
func (c *BenchMemoryCommand) print(doc *sweep.Doc) error {
	b, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return err
	}
	md := memTable(*doc)
	fmt.Println(string(b))
	fmt.Print(md)
	if c.JSON != "" {
		if err := os.WriteFile(c.JSON, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if c.Markdown != "" {
		return os.WriteFile(c.Markdown, []byte(md), 0o644)
	}
	return nil
}

// renderMemTable prints the table of a document written with --json.
func renderMemTable(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc sweep.Doc
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Print(memTable(doc))
	return nil
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spotlight-lm/spotlight/bench"
	"github.com/spotlight-lm/spotlight/corpora"
	"github.com/spotlight-lm/spotlight/datadir"
	"github.com/spotlight-lm/spotlight/lm"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Benchmarks", Example: "  spotlight bench train --preset small"}
	group(cmd)
	cmd.AddCommand(newBenchTrainCmd(), newBenchMemoryCmd())
	return cmd
}

// BenchTrainCommand times training with and without capture, next to the PyTorch reference
// (bench/torch_charlm.py) run in the same process tree.
type BenchTrainCommand struct {
	Preset        string
	Warmup, Steps int
	Round         int    // steps of one run before the next takes its turn
	Reps          int    // whole comparisons, each with fresh stores
	Torch         string // "builtin": the embedded bench/torch_charlm.py; "off": skip; else a path
	Python        string // interpreter, looked up on PATH
	CPUProfile    string
	JSON          bool
}

// trainBench is the JSON document of `spotlight bench train --json`.
type trainBench struct {
	Preset  string           `json:"preset"`
	Backend string           `json:"backend"`
	Vocab   int              `json:"vocab"`
	Results []lm.BenchResult `json:"results"` // over all repetitions
	// CaptureOverhead is 1 − capture/no-capture tokens/s (results 1 and 0), the median over
	// the repetitions, each of which is in CaptureOverheads.
	CaptureOverhead  float64         `json:"capture_overhead"`
	CaptureOverheads []float64       `json:"capture_overheads"`
	PyTorch          json.RawMessage `json:"pytorch,omitempty"`
	VsPyTorch        float64         `json:"vs_pytorch,omitempty"` // no-capture tokens/s ÷ PyTorch's
}

func newBenchTrainCmd() *cobra.Command {
	c := &BenchTrainCommand{}
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Training tokens/s with and without capture, next to the PyTorch reference, in one run",
		Example: `  spotlight bench train --preset small
  spotlight bench train --python python3.11 --steps 100 --json
  spotlight bench train --torch off --cpuprofile cpu.out`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.Run(cmd.Context()) },
	}
	fl := cmd.Flags()
	fl.StringVar(&c.Preset, "preset", "small", "model preset")
	fl.IntVar(&c.Warmup, "warmup", 3, "untimed steps first")
	fl.IntVar(&c.Steps, "steps", 50, "timed steps (the capture run ends with a durable commit; short runs overstate its cost)")
	fl.IntVar(&c.Round, "round", 25, "steps of one run before the next takes its turn (the runs share the machine's load alike)")
	fl.IntVar(&c.Reps, "reps", 1, "whole comparisons, each with fresh stores; the overhead reported is their median (it varies more between comparisons than within one)")
	fl.StringVar(&c.Torch, "torch", "builtin", "PyTorch reference script: builtin (bench/torch_charlm.py), a path, or off")
	fl.StringVar(&c.Python, "python", "python3", "Python interpreter for the reference (name on PATH or a path)")
	fl.BoolVar(&c.JSON, "json", false, "print one JSON document")
	fl.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the run (go tool pprof)")
	return cmd
}

// Run times the three Go configurations, then the reference, and prints them.
func (c *BenchTrainCommand) Run(ctx context.Context) error {
	cfg, err := lm.Preset(c.Preset)
	if err != nil {
		return err
	}
	if c.Warmup < 0 || c.Steps <= 0 || c.Round <= 0 || c.Reps <= 0 {
		return fmt.Errorf("--steps, --round and --reps must be positive and --warmup non-negative")
	}
	python, skip := c.torchReady(ctx)
	if skip != "" {
		fmt.Fprintf(os.Stderr, "pytorch reference skipped: %s\n", skip)
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	doc := trainBench{Preset: c.Preset, Backend: backendName()}
	fmt.Fprintf(os.Stderr, "bench: %d steps of each run, %d at a time in turn\n", c.Steps, c.Round)
	for rep := range c.Reps {
		res, vocab, err := benchOnce(cfg, c.Warmup, c.Steps, c.Round)
		if err != nil {
			return err
		}
		doc.Vocab = vocab
		doc.Results = mergeBench(doc.Results, res, rep)
		over := 1 - res[1].TokensPerSec/res[0].TokensPerSec
		doc.CaptureOverheads = append(doc.CaptureOverheads, over)
		if c.Reps > 1 {
			fmt.Fprintf(os.Stderr, "bench: repetition %d of %d: capture overhead %.1f%%\n", rep+1, c.Reps, 100*over)
		}
	}
	doc.CaptureOverhead = median(doc.CaptureOverheads)
	if skip == "" {
		if doc.PyTorch, doc.VsPyTorch, err = c.runTorch(ctx, python, cfg, doc); err != nil {
			return err
		}
	}
	if c.JSON {
		return printJSON(doc)
	}
	printBench(doc)
	return nil
}

// torchReady finds the interpreter and checks that it can import torch; skip says why not.
func (c *BenchTrainCommand) torchReady(ctx context.Context) (python, skip string) {
	if c.Torch == "off" {
		return "", "--torch off"
	}
	python, err := exec.LookPath(c.Python)
	if err != nil {
		return "", fmt.Sprintf("no Python interpreter %q (set --python)", c.Python)
	}
	if err := exec.CommandContext(ctx, python, "-c", "import torch").Run(); err != nil {
		return "", fmt.Sprintf("%s cannot import torch (install it, e.g. apt-get install python3-torch libopenblas0-pthread, or set --python)", python)
	}
	return python, ""
}

// runTorch runs the reference with the benchmarked model's shape and vocabulary.
func (c *BenchTrainCommand) runTorch(ctx context.Context, python string, cfg lm.Config, doc trainBench) (json.RawMessage, float64, error) {
	script := c.Torch
	if script == "builtin" {
		tmp, err := os.MkdirTemp("", "spotlight-bench")
		if err != nil {
			return nil, 0, err
		}
		defer os.RemoveAll(tmp)
		script = filepath.Join(tmp, "torch_charlm.py")
		if err := os.WriteFile(script, bench.TorchCharLM, 0o644); err != nil {
			return nil, 0, err
		}
	}
	args := []string{script, "--d", strconv.Itoa(cfg.D), "--blocks", strconv.Itoa(cfg.Blocks),
		"--heads", strconv.Itoa(cfg.Heads), "--ctx", strconv.Itoa(cfg.Ctx), "--batch", strconv.Itoa(cfg.Batch),
		"--vocab", strconv.Itoa(doc.Vocab), "--steps", strconv.Itoa(c.Steps), "--warmup", strconv.Itoa(c.Warmup),
		"--threads", strconv.Itoa(runtime.GOMAXPROCS(0)), "--lr", fmt.Sprint(cfg.LR),
		"--momentum", fmt.Sprint(cfg.Momentum), "--weight-decay", fmt.Sprint(cfg.WeightDecay), "--clip", fmt.Sprint(cfg.Clip)}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, 0, fmt.Errorf("pytorch reference %s: %w: %s", c.Torch, err, lastLine(stderr.String()))
	}
	var ref struct {
		TokensPerSec float64 `json:"tokens_per_s"`
	}
	if err := json.Unmarshal(out, &ref); err != nil || ref.TokensPerSec <= 0 {
		return nil, 0, fmt.Errorf("pytorch reference printed %q, not its JSON line", out)
	}
	return bytes.TrimSpace(out), doc.Results[0].TokensPerSec / ref.TokensPerSec, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func printBench(doc trainBench) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "preset %s, backend %s, vocab %d\nrun\tms/step\ttokens/s\tCPU ms/step\tof it system\tminor faults/step\t\n", doc.Preset, doc.Backend, doc.Vocab)
	for _, r := range doc.Results {
		fmt.Fprintf(w, "%s\t%.1f\t%.0f\t%.1f\t%.1f\t%.0f\t\n", r.Name, r.MsPerStep, r.TokensPerSec, r.CPUMsPerStep, r.SysMsPerStep, r.MinorFaultsPerStep)
	}
	_ = w.Flush()
	if len(doc.CaptureOverheads) > 1 {
		fmt.Printf("capture overhead: %.1f%% (median of", 100*doc.CaptureOverhead)
		for _, o := range doc.CaptureOverheads {
			fmt.Printf(" %.1f%%", 100*o)
		}
		fmt.Println(")")
	} else {
		fmt.Printf("capture overhead: %.1f%%\n", 100*doc.CaptureOverhead)
	}
	if doc.PyTorch != nil {
		fmt.Printf("pytorch: %s\n", doc.PyTorch)
		fmt.Printf("spotlight (no capture) / pytorch: %.3f×\n", doc.VsPyTorch)
	}
}

// benchOnce times the three configurations once, with fresh trainers and stores.
func benchOnce(cfg lm.Config, warmup, steps, round int) ([]lm.BenchResult, int, error) {
	runs, vocab, cleanup, err := benchRuns(cfg, corpora.Default())
	defer cleanup()
	if err != nil {
		return nil, 0, err
	}
	res, err := lm.Bench(runs, warmup, steps, round)
	return res, vocab, err
}

// mergeBench folds repetition rep's results into the mean of those before it.
func mergeBench(acc, res []lm.BenchResult, rep int) []lm.BenchResult {
	if rep == 0 {
		return res
	}
	w := float64(rep) / float64(rep+1)
	mean := func(a, b float64) float64 { return w*a + (1-w)*b }
	for i := range acc {
		a, r := &acc[i], res[i]
		a.Steps += r.Steps
		a.MsPerStep = mean(a.MsPerStep, r.MsPerStep)
		a.TokensPerSec = r.TokensPerSec * r.MsPerStep / a.MsPerStep // tokens a step ÷ the mean step
		a.CPUMsPerStep = mean(a.CPUMsPerStep, r.CPUMsPerStep)
		a.SysMsPerStep = mean(a.SysMsPerStep, r.SysMsPerStep)
		a.MinorFaultsPerStep = mean(a.MinorFaultsPerStep, r.MinorFaultsPerStep)
	}
	return acc
}

// median of a non-empty list.
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// benchRuns sets up the three configurations, each with its own trainer and directory: no
// capture; capture into a real store; capture whose vectors are dropped (what the graph's
// extra outputs cost alone). It also returns the model's vocabulary size. cleanup closes and
// removes what was made, also after an error.
func benchRuns(cfg lm.Config, text []byte) (runs []lm.BenchRun, vocab int, cleanup func(), err error) {
	var undo []func()
	cleanup = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	tmp, err := os.MkdirTemp("", "spotlight-bench")
	if err != nil {
		return nil, 0, cleanup, err
	}
	undo = append(undo, func() { os.RemoveAll(tmp) })
	for _, mode := range []string{"no-capture", "capture", "capture-discard"} {
		dir, tr, err := datadir.Create(filepath.Join(tmp, mode), cfg, text)
		if err != nil {
			return nil, 0, cleanup, err
		}
		undo = append(undo, func() { dir.Close() }, func() { tr.Close() })
		r := lm.BenchRun{Name: mode, Trainer: tr}
		switch mode {
		case "no-capture":
			err = tr.DisableCapture()
		case "capture":
			r.Memory = dir.Store
			err = dir.Store.SkipDerived() // as spotlight train does
		}
		if err != nil {
			return nil, 0, cleanup, err
		}
		runs, vocab = append(runs, r), tr.Cfg.Vocab
	}
	return runs, vocab, cleanup, nil
}

func backendName() string {
	if b := os.Getenv("GOMLX_BACKEND"); b != "" {
		return b
	}
	return "go:parallelism=-1"
}

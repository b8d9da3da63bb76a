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
	cmd.AddCommand(newBenchTrainCmd())
	return cmd
}

// BenchTrainCommand times training with and without capture, next to the PyTorch reference
// (bench/torch_charlm.py) run in the same process tree.
type BenchTrainCommand struct {
	Preset        string
	Warmup, Steps int
	Torch         string // "builtin": the embedded bench/torch_charlm.py; "off": skip; else a path
	Python        string // interpreter, looked up on PATH
	CPUProfile    string
	JSON          bool
}

// trainBench is the JSON document of `spotlight bench train --json`.
type trainBench struct {
	Preset          string           `json:"preset"`
	Backend         string           `json:"backend"`
	Vocab           int              `json:"vocab"`
	Results         []lm.BenchResult `json:"results"`
	CaptureOverhead float64          `json:"capture_overhead"` // 1 − capture/no-capture tokens/s (results 1 and 0)
	PyTorch         json.RawMessage  `json:"pytorch,omitempty"`
	VsPyTorch       float64          `json:"vs_pytorch,omitempty"` // no-capture tokens/s ÷ PyTorch's
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
	if c.Warmup < 0 || c.Steps <= 0 {
		return fmt.Errorf("--steps must be positive and --warmup non-negative")
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
	modes := []string{"no-capture", "capture", "capture-discard"}
	bar := newProgress(nil, "bench", len(modes))
	for i, mode := range modes {
		bar.Event("bench", "run", mode, "steps", c.Steps)
		r, vocab, err := benchOnce(cfg, corpora.Default(), mode, c.Warmup, c.Steps)
		if err != nil {
			return err
		}
		doc.Results, doc.Vocab = append(doc.Results, r), vocab
		bar.Set(i+1, "run", mode)
	}
	bar.Finish()
	doc.CaptureOverhead = 1 - doc.Results[1].TokensPerSec/doc.Results[0].TokensPerSec
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
	fmt.Fprintf(w, "preset %s, backend %s, vocab %d\nrun\tms/step\ttokens/s\t\n", doc.Preset, doc.Backend, doc.Vocab)
	for _, r := range doc.Results {
		fmt.Fprintf(w, "%s\t%.1f\t%.0f\t\n", r.Name, r.MsPerStep, r.TokensPerSec)
	}
	_ = w.Flush()
	fmt.Printf("capture overhead: %.1f%%\n", 100*doc.CaptureOverhead)
	if doc.PyTorch != nil {
		fmt.Printf("pytorch: %s\n", doc.PyTorch)
		fmt.Printf("spotlight (no capture) / pytorch: %.3f×\n", doc.VsPyTorch)
	}
}

// benchOnce times one configuration: no capture; capture into a real store in a temporary
// directory; or capture whose vectors are dropped (what the graph's extra outputs cost alone).
// It also returns the model's vocabulary size.
func benchOnce(cfg lm.Config, text []byte, mode string, warmup, steps int) (lm.BenchResult, int, error) {
	tmp, err := os.MkdirTemp("", "spotlight-bench")
	if err != nil {
		return lm.BenchResult{}, 0, err
	}
	defer os.RemoveAll(tmp)
	dir, tr, err := datadir.Create(filepath.Join(tmp, "d"), cfg, text)
	if err != nil {
		return lm.BenchResult{}, 0, err
	}
	defer dir.Close()
	defer tr.Close()
	var r lm.BenchResult
	switch mode {
	case "no-capture":
		if err = tr.DisableCapture(); err == nil {
			r, err = lm.BenchTrain(mode, tr, warmup, steps, nil)
		}
	case "capture-discard":
		r, err = lm.BenchTrain(mode, tr, warmup, steps, nil)
	default:
		r, err = lm.BenchTrain(mode, tr, warmup, steps, dir.Store)
	}
	return r, tr.Cfg.Vocab, err
}

func backendName() string {
	if b := os.Getenv("GOMLX_BACKEND"); b != "" {
		return b
	}
	return "go:parallelism=-1"
}
